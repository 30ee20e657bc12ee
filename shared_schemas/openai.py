"""The OpenAI-compatible embeddings route (``POST /v1/embeddings``): its request and response.

OpenAI's wire format (the ``openai`` SDK's ``embeddings.create``), with images the way
Infinity's OpenAI-compatible server takes them: ``"modality": "image"`` and every ``input``
item a ``data:image/png;base64,...`` or ``data:image/jpeg;base64,...`` URI. ``usage`` counts the
queries charged (one per text or image; 0 for an idempotent replay), not tokens: this vendor
prices per item, so ``prompt_tokens`` and ``total_tokens`` both carry that count.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared_schemas.embeddings import EncodingFormat

#: What the ``input`` items are: texts (OpenAI's only kind) or image data URIs (Infinity's).
Modality = Literal["text", "image"]

#: The media types an image data URI may name (the bytes must then be that format).
IMAGE_DATA_URI_PREFIXES = ("data:image/png;base64,", "data:image/jpeg;base64,")


class OpenAIEmbeddingRequest(BaseModel):
    """OpenAI's embeddings request; one input item (text or image) = one query."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(..., description="The served model's id (`GET /v1/models`).")
    input: str | list[str] = Field(
        ...,
        description="A text or a list of texts; with `modality: image`, data URIs "
        "(`data:image/png;base64,...` or `data:image/jpeg;base64,...`). Remote URLs are refused.",
    )
    encoding_format: EncodingFormat = Field(
        "float",
        description="`float`: JSON numbers. `base64`: little-endian float32 bytes, base64-encoded "
        "(the `openai` SDK asks for this and decodes it).",
    )
    dimensions: int | None = Field(
        None,
        ge=1,
        description="Only the model's own embedding size is served (no truncation); any other "
        "value is refused with 400.",
    )
    user: str | None = Field(None, max_length=256, description="Accepted and ignored.")
    modality: Modality = Field(
        "text", description="`text` (default) or `image` (Infinity's extension)."
    )

    @property
    def items(self) -> list[str]:
        """``input`` as a list (OpenAI accepts one string for one item)."""
        return [self.input] if isinstance(self.input, str) else list(self.input)


class OpenAIEmbedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int = Field(..., ge=0, description="Position of the input in the request.")
    embedding: list[float] | str = Field(
        ..., description="A list of floats, or base64 float32 (little-endian) bytes."
    )


class OpenAIUsage(BaseModel):
    """Queries charged by the request (0 for a replay); both fields carry the same count."""

    prompt_tokens: int = Field(..., ge=0, description="Queries charged (items, not tokens).")
    total_tokens: int = Field(..., ge=0, description="Queries charged (items, not tokens).")


class OpenAIEmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIEmbedding]
    model: str
    usage: OpenAIUsage
