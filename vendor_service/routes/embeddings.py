"""``POST /v1/embeddings/images`` and ``/v1/embeddings/texts``: the metered endpoints.

Both read the same way: the meter prices the request (and answers a finished retry), the inputs
are decoded off the event loop (invalid input charges nothing), then inside the charge the batcher
embeds them and the meter completes the charge with the response (``vendor_service/meter.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any

import numpy as np
import torch
from fastapi import APIRouter, Header, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive

from shared_schemas import (
    IMAGES,
    TEXTS,
    EmbeddingEndpoint,
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
from vendor_service.inference.batcher import Batcher
from vendor_service.inference.loading import LoadedModel
from vendor_service.inference.preprocess import InputError, images_to_tensor, texts_to_tensor
from vendor_service.meter import Charge, ClientDisconnected

router = APIRouter(prefix="/v1/embeddings", tags=["embeddings"])

#: The metered paths (their bodies may be as large as ``limits.max_request_bytes``).
PATHS = ("/v1/embeddings/images", "/v1/embeddings/texts")

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


async def _disconnected(receive: Receive) -> None:
    """Returns when the client has gone (the body was read already: only a disconnect comes)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def embed_unless_abandoned(
    batcher: Batcher,
    receive: Receive,
    kind: EmbeddingEndpoint,
    inputs: torch.Tensor,
    normalize: bool,
) -> np.ndarray:
    """The batcher's answer, unless the client disconnects first.

    Raises:
        ClientDisconnected: the client went away; stage ``queued`` when its job was dropped
            before the model took it, ``running`` when the model's answer is discarded.
    """
    job = batcher.submit(kind, inputs, normalize)
    answer = asyncio.wrap_future(job)
    gone: asyncio.Future[Any] = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait([answer, gone], return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if answer.done():
        return answer.result()
    stage = "queued" if job.cancel() else "running"
    answer.cancel()
    raise ClientDisconnected(stage)


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
    request: Request,
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
    await charge.check_budget()
    limits = settings.limits
    inputs = await _decoded(
        images_to_tensor,
        body.images,
        model.preprocess,
        limits.max_image_pixels,
        limits.max_aspect_ratio,
    )
    async with charge:
        vectors = await embed_unless_abandoned(
            batcher, request.receive, IMAGES, inputs, body.normalize
        )
        return await charge.complete(_response(vectors, body, model, charge, meter.request_id))


@router.post("/texts", response_model=EmbeddingResponse, responses=_ERRORS)
async def embed_texts(
    request: Request,
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
    await charge.check_budget()
    max_chars = settings.limits.max_text_chars
    inputs = await _decoded(texts_to_tensor, body.texts, model.tokenizer, max_chars)
    async with charge:
        vectors = await embed_unless_abandoned(
            batcher, request.receive, TEXTS, inputs, body.normalize
        )
        return await charge.complete(_response(vectors, body, model, charge, meter.request_id))
