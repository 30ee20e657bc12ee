"""API keys as the admin endpoints manage them (``/v1/admin/keys``)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from shared_schemas.usage import BudgetPublic


class KeyCreateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., min_length=1, max_length=200)
    # strict: JSON `true` must not pass as 1 (or 1.0) for numbers that cost money
    budget: int = Field(
        ..., ge=0, le=10**12, strict=True, description="Queries this key may spend."
    )
    rate_limit_rps: float | None = Field(
        None,
        gt=0,
        le=1e6,
        strict=True,
        description="Requests per second; null = the server default.",
    )
    rate_limit_burst: int | None = Field(None, ge=1, le=10**6, strict=True)


class KeyTopUpRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    queries: int = Field(
        ..., ge=1, le=10**12, strict=True, description="Queries added to the key's limit."
    )


class KeyPublic(BaseModel):
    id: str
    name: str
    prefix: str = Field(..., description="First characters of the key, to recognise it.")
    budget: BudgetPublic
    created_at: datetime
    revoked: bool
    rate_limit_rps: float
    rate_limit_burst: int


class KeyCreateResponse(BaseModel):
    key: str = Field(..., description="The clear API key. Shown once; only its hash is stored.")
    info: KeyPublic


class KeyListResponse(BaseModel):
    data: list[KeyPublic]
