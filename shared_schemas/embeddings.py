"""Embedding requests and responses (``POST /v1/embeddings/images|texts``)."""

from __future__ import annotations

import base64
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from shared_schemas.usage import BudgetPublic, QueryUsage

EncodingFormat = Literal["float", "base64"]


class _EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    normalize: bool = Field(True, description="L2-normalize each embedding.")
    encoding_format: EncodingFormat = Field(
        "float",
        description="`float`: JSON numbers. `base64`: little-endian float32 bytes, base64-encoded.",
    )


class ImageEmbeddingRequest(_EmbeddingRequest):
    """Images to embed; each is a base64-encoded PNG or JPEG file. One image = one query."""

    images: list[str] = Field(..., description="Base64-encoded PNG/JPEG files.")


class TextEmbeddingRequest(_EmbeddingRequest):
    """Texts to embed. One text = one query."""

    texts: list[str] = Field(..., description="Texts to embed (tokenized by the model).")


class EmbeddingItem(BaseModel):
    index: int = Field(..., ge=0, description="Position of the input in the request.")
    embedding: list[float] | str = Field(
        ..., description="A list of floats, or base64 float32 (little-endian) bytes."
    )


class EmbeddingResponse(BaseModel):
    data: list[EmbeddingItem]
    model: str
    fingerprint: str = Field(..., description="sha256 of the served weights.")
    usage: QueryUsage
    budget: BudgetPublic
    request_id: str


def encode_embedding(vector: np.ndarray, encoding_format: EncodingFormat) -> list[float] | str:
    """Encode one embedding for the wire."""
    vector = np.asarray(vector, dtype="<f4")
    if encoding_format == "base64":
        return base64.b64encode(vector.tobytes()).decode("ascii")
    floats: list[float] = vector.astype(float).tolist()
    return floats


def decode_embedding(value: list[float] | str) -> np.ndarray:
    """Decode one embedding from the wire into a float32 vector."""
    if isinstance(value, str):
        return np.frombuffer(base64.b64decode(value), dtype="<f4").astype(np.float32)
    return np.asarray(value, dtype=np.float32)
