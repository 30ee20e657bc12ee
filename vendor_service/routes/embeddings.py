"""``POST /v1/embeddings/images`` and ``/v1/embeddings/texts``: the metered endpoints."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from typing import Annotated

import torch
from fastapi import APIRouter, Header
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from shared_schemas import (
    BudgetPublic,
    EmbeddingItem,
    EmbeddingResponse,
    ErrorResponse,
    ImageEmbeddingRequest,
    QueryUsage,
    TextEmbeddingRequest,
    encode_embedding,
)
from vendor_service.deps import (
    BatcherDep,
    BudgetDep,
    MetricsDep,
    ModelDep,
    SettingsDep,
)
from vendor_service.errors import ApiError
from vendor_service.inference.batcher import Batcher, Kind
from vendor_service.inference.loading import LoadedModel
from vendor_service.inference.preprocess import InputError, images_to_tensor, texts_to_tensor
from vendor_service.metering import ChargeOutcome, ChargeResult
from vendor_service.metrics import Metrics
from vendor_service.settings import VendorSettings

router = APIRouter(prefix="/v1/embeddings", tags=["embeddings"])

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=200,
        description="Retry with the same key and body: stored result, not charged again.",
    ),
]

_ERRORS = {s: {"model": ErrorResponse} for s in (400, 401, 402, 409, 413, 422, 429, 500, 503)}


def _metered_headers(charged: int, remaining: int) -> dict[str, str]:
    return {"X-Queries-Charged": str(charged), "X-Budget-Remaining": str(remaining)}


def _refusal(result: ChargeResult, queries: int) -> ApiError:
    headers = _metered_headers(0, result.remaining)
    if result.outcome is ChargeOutcome.BODY_MISMATCH:
        return ApiError(
            422, "idempotency_key_reused", "Idempotency-Key was used with a different body", headers
        )
    if result.outcome is ChargeOutcome.IN_FLIGHT:
        headers["Retry-After"] = "1"  # the first request usually finishes within a second
        return ApiError(
            409,
            "idempotency_in_flight",
            "a request with this Idempotency-Key is in flight",
            headers,
        )
    if result.outcome is ChargeOutcome.INSUFFICIENT:
        return ApiError(
            402,
            "budget_exceeded",
            f"request needs {queries} queries; {result.remaining} remain",
            headers,
        )
    return ApiError(401, "invalid_key", "unknown or revoked API key")


def _replay(result: ChargeResult) -> Response:
    body = json.loads(result.stored_response or b"{}")
    body["usage"] = {"queries": 0}
    body["budget"] = {"limit": result.limit, "used": result.used, "remaining": result.remaining}
    return Response(
        json.dumps(body).encode(),
        media_type="application/json",
        headers={**_metered_headers(0, result.remaining), "Idempotent-Replayed": "true"},
    )


async def _embed(
    kind: Kind,
    items: list[str],
    request: ImageEmbeddingRequest | TextEmbeddingRequest,
    prepare: Callable[[], torch.Tensor],
    meter: BudgetDep,
    model: LoadedModel,
    batcher: Batcher,
    settings: VendorSettings,
    metrics: Metrics,
    idem_key: str | None,
) -> Response:
    n = len(items)
    if n == 0:
        raise ApiError(422, "empty_request", f"`{kind}` must contain at least one item")
    if n > settings.limits.max_items_per_request:
        raise ApiError(
            422,
            "too_many_items",
            f"{n} {kind} in one request; at most {settings.limits.max_items_per_request}",
        )
    store = meter.store
    body_sha = hashlib.sha256(
        json.dumps([kind, request.model_dump()], sort_keys=True).encode()
    ).hexdigest()
    if idem_key is not None:
        # Cheap early answer for retries; the charge below re-checks atomically.
        seen = await run_in_threadpool(store.lookup_idempotent, meter.key_id, idem_key, body_sha)
        if seen is not None:
            if seen.outcome is ChargeOutcome.REPLAY:
                return _replay(seen)
            raise _refusal(seen, n)
    try:
        inputs = await run_in_threadpool(prepare)
    except InputError as exc:
        raise ApiError(exc.status, exc.code, exc.message) from None

    result = await run_in_threadpool(
        store.charge,
        meter.key_id,
        n,
        request_id=meter.request_id,
        endpoint=kind,
        owner=meter.owner,
        idem_key=idem_key,
        body_sha256=body_sha,
    )
    if result.outcome is ChargeOutcome.REPLAY:
        return _replay(result)
    if result.outcome is not ChargeOutcome.CHARGED:
        raise _refusal(result, n)

    try:
        vectors = await asyncio.wrap_future(batcher.submit(kind, inputs, request.normalize))
        response = EmbeddingResponse(
            data=[
                EmbeddingItem(index=i, embedding=encode_embedding(v, request.encoding_format))
                for i, v in enumerate(vectors)
            ],
            model=model.name,
            fingerprint=model.fingerprint,
            usage=QueryUsage(queries=n),
            budget=BudgetPublic(limit=result.limit, used=result.used, remaining=result.remaining),
            request_id=meter.request_id,
        )
        body = response.model_dump_json().encode()
        await run_in_threadpool(store.complete, meter.key_id, meter.request_id, body)
    except BaseException as exc:
        # The client gets no embeddings, so it pays nothing; blocking call on purpose: it
        # must run even when this task is being cancelled.
        store.refund(meter.key_id, meter.request_id)
        if isinstance(exc, Exception):
            raise ApiError(
                500, "inference_failed", "inference failed; nothing was charged"
            ) from None
        raise
    metrics.queries_charged.labels(kind).inc(n)
    return Response(
        body, media_type="application/json", headers=_metered_headers(n, result.remaining)
    )


@router.post("/images", response_model=EmbeddingResponse, responses=_ERRORS)
async def embed_images(
    body: ImageEmbeddingRequest,
    meter: BudgetDep,
    model: ModelDep,
    batcher: BatcherDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Embed base64 PNG/JPEG images; one image = one query, charged all-or-nothing."""
    max_pixels = settings.limits.max_image_pixels
    return await _embed(
        "images",
        body.images,
        body,
        lambda: images_to_tensor(body.images, model.preprocess, max_pixels),
        meter,
        model,
        batcher,
        settings,
        metrics,
        idempotency_key,
    )


@router.post("/texts", response_model=EmbeddingResponse, responses=_ERRORS)
async def embed_texts(
    body: TextEmbeddingRequest,
    meter: BudgetDep,
    model: ModelDep,
    batcher: BatcherDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Embed texts with the model's tokenizer; one text = one query, charged all-or-nothing."""
    max_chars = settings.limits.max_text_chars
    return await _embed(
        "texts",
        body.texts,
        body,
        lambda: texts_to_tensor(body.texts, model.tokenizer, max_chars),
        meter,
        model,
        batcher,
        settings,
        metrics,
        idempotency_key,
    )
