"""The model card (``GET /v1/models``): everything a client needs to query and price the model."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ModelCard(BaseModel):
    id: str = Field(..., description="open_clip architecture name.")
    pretrained: str | None = Field(None, description="open_clip pretrained tag or checkpoint name.")
    trained: bool = Field(..., description="False when the weights are random (test models).")
    description: str = ""
    fingerprint: str = Field(..., description="sha256 of the weights (state_dict tensors).")
    embed_dim: int
    image_size: int
    image_mean: list[float]
    image_std: list[float]
    context_length: int
    logit_scale: float = Field(..., description="exp(logit_scale) of the model, e.g. 100.")
    price_per_image_query: float = Field(..., ge=0)
    price_per_text_query: float = Field(..., ge=0)
    currency: str = "USD"
    max_items_per_request: int = Field(..., ge=1, description="Most images/texts in one request.")
    max_request_bytes: int = Field(..., ge=1, description="Largest request body accepted.")


class ModelListResponse(BaseModel):
    data: list[ModelCard]
