"""``POST /v1/embeddings/images`` and ``/v1/embeddings/texts``: the metered endpoints.

Both read the same way: the meter prices the request (and answers a finished retry), the inputs
are decoded off the event loop (invalid input charges nothing), then inside the charge the batcher
embeds them and the meter completes the charge with the response (``vendor_service/meter.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import numpy as np
import torch
from fastapi import APIRouter, Header
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from shared_schemas import (
    IMAGES,
    TEXTS,
    EmbeddingItem,
    EmbeddingResponse,
    ErrorResponse,
    ImageEmbeddingRequest,
    QueryUsage,
    TextEmbeddingRequest,
    encode_embedding,
)
from vendor_service.deps import BatcherDep, MeterDep, ModelDep, SettingsDep
from vendor_service.errors import ApiError
from vendor_service.inference.loading import LoadedModel
from vendor_service.inference.preprocess import InputError, images_to_tensor, texts_to_tensor
from vendor_service.meter import Charge

router = APIRouter(prefix="/v1/embeddings", tags=["embeddings"])

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=200,
        description="Retry with the same key and body: stored result, not charged again.",
    ),
]

_ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorResponse} for s in (400, 401, 402, 409, 413, 422, 429, 500, 503)
}


async def _decoded(prepare: Callable[..., torch.Tensor], *args: Any) -> torch.Tensor:
    """Decode or tokenize off the event loop; invalid input is a 4xx and charges nothing."""
    try:
        return await run_in_threadpool(prepare, *args)
    except InputError as exc:
        raise ApiError(exc.status, exc.code, exc.message) from None


def _response(
    vectors: np.ndarray,
    request: ImageEmbeddingRequest | TextEmbeddingRequest,
    model: LoadedModel,
    charge: Charge,
    request_id: str,
) -> EmbeddingResponse:
    return EmbeddingResponse(
        data=[
            EmbeddingItem(index=i, embedding=encode_embedding(v, request.encoding_format))
            for i, v in enumerate(vectors)
        ],
        model=model.name,
        fingerprint=model.fingerprint,
        usage=QueryUsage(queries=charge.queries),
        budget=charge.budget,
        request_id=request_id,
    )


@router.post("/images", response_model=EmbeddingResponse, responses=_ERRORS)
async def embed_images(
    body: ImageEmbeddingRequest,
    meter: MeterDep,
    model: ModelDep,
    batcher: BatcherDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Embed base64 PNG/JPEG images; one image = one query, charged all-or-nothing."""
    charge = meter.charge(IMAGES, body, len(body.images), idempotency_key)
    await charge.check_idempotency_key()
    max_pixels = settings.limits.max_image_pixels
    inputs = await _decoded(images_to_tensor, body.images, model.preprocess, max_pixels)
    async with charge:
        vectors = await batcher.embed(IMAGES, inputs, body.normalize)
        return await charge.complete(_response(vectors, body, model, charge, meter.request_id))


@router.post("/texts", response_model=EmbeddingResponse, responses=_ERRORS)
async def embed_texts(
    body: TextEmbeddingRequest,
    meter: MeterDep,
    model: ModelDep,
    batcher: BatcherDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Embed texts with the model's tokenizer; one text = one query, charged all-or-nothing."""
    charge = meter.charge(TEXTS, body, len(body.texts), idempotency_key)
    await charge.check_idempotency_key()
    max_chars = settings.limits.max_text_chars
    inputs = await _decoded(texts_to_tensor, body.texts, model.tokenizer, max_chars)
    async with charge:
        vectors = await batcher.embed(TEXTS, inputs, body.normalize)
        return await charge.complete(_response(vectors, body, model, charge, meter.request_id))
