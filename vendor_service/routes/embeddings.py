"""The metered endpoints: ``POST /v1/embeddings/images|texts`` and the OpenAI-compatible
``POST /v1/embeddings``.

Every one of them is :func:`metered_embeddings` with its own parsing and rendering: the meter
prices the request (and answers a finished retry), checks the budget against the item count,
the inputs are decoded off the event loop (invalid input charges nothing), then inside the
charge the batcher embeds them and the meter completes the charge with the response
(``vendor_service/meter.py``). There is one charge path, whatever the wire format.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any

import numpy as np
import torch
from fastapi import APIRouter, Header, Request
from fastapi.responses import Response
from pydantic import BaseModel
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
from shared_schemas.openai import (
    IMAGE_DATA_URI_PREFIXES,
    OpenAIEmbedding,
    OpenAIEmbeddingRequest,
    OpenAIEmbeddingResponse,
    OpenAIUsage,
)
from vendor_service.deps import BatcherDep, MeterDep, ModelDep, SettingsDep
from vendor_service.errors import ApiError
from vendor_service.inference.batcher import Batcher
from vendor_service.inference.loading import LoadedModel
from vendor_service.inference.preprocess import InputError, images_to_tensor, texts_to_tensor
from vendor_service.meter import Charge, ClientDisconnected
from vendor_service.settings import VendorSettings

router = APIRouter(prefix="/v1/embeddings", tags=["embeddings"])

#: The metered paths (their bodies may be as large as ``limits.max_request_bytes``).
PATHS = ("/v1/embeddings/images", "/v1/embeddings/texts", "/v1/embeddings")

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


def _prepare(
    kind: EmbeddingEndpoint,
    items: list[str],
    model: LoadedModel,
    settings: VendorSettings,
    field: str,
) -> torch.Tensor:
    """Decode and preprocess images, or tokenize texts: the model's input tensor."""
    limits = settings.limits
    if kind == IMAGES:
        return images_to_tensor(
            items,
            model.preprocess,
            limits.max_image_pixels,
            limits.max_aspect_ratio,
            field,
        )
    return texts_to_tensor(items, model.tokenizer, limits.max_text_chars, field)


async def metered_embeddings(
    request: Request,
    charge: Charge,
    items: list[str],
    model: LoadedModel,
    batcher: Batcher,
    settings: VendorSettings,
    *,
    normalize: bool,
    render: Callable[[np.ndarray, Charge], BaseModel],
    field: str,
) -> Response:
    """The one metered path of every embedding route, from the priced charge to the answer.

    Args:
        request: the HTTP request (its disconnect refunds the charge).
        charge: the request's charge from ``meter.charge`` (not taken yet).
        items: base64 image files or texts, one query each (``charge.endpoint`` says which).
        model: the served model.
        batcher: the inference worker.
        settings: the vendor's settings (input limits).
        normalize: L2-normalize each embedding.
        render: the response body in the route's wire format, from the embeddings.
        field: the request's name for ``items``, in error messages.
    """

    def prepare() -> torch.Tensor:
        try:
            return _prepare(charge.endpoint, items, model, settings, field)
        except InputError as exc:
            raise ApiError(exc.status, exc.code, exc.message) from None

    inputs = await charge.admit(prepare)  # one hop: key, budget, decode, charge
    async with charge:
        vectors = await embed_unless_abandoned(
            batcher, request.receive, charge.endpoint, inputs, normalize
        )
        return await charge.complete(render(vectors, charge))


def _native(
    request: ImageEmbeddingRequest | TextEmbeddingRequest, model: LoadedModel, request_id: str
) -> Callable[[np.ndarray, Charge], BaseModel]:
    def render(vectors: np.ndarray, charge: Charge) -> EmbeddingResponse:
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

    return render


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
    render = _native(body, model, meter.request_id)
    return await metered_embeddings(
        request, charge, body.images, model, batcher, settings,
        normalize=body.normalize, render=render, field="images",
    )  # fmt: skip


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
    render = _native(body, model, meter.request_id)
    return await metered_embeddings(
        request, charge, body.texts, model, batcher, settings,
        normalize=body.normalize, render=render, field="texts",
    )  # fmt: skip


# -- the OpenAI-compatible route -------------------------------------------------------------

_OPENAI_ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorResponse} for s in (400, 401, 402, 404, 409, 413, 422, 429, 500, 503)
}
_DATA_URI_HINT = "a data:image/png;base64,... or data:image/jpeg;base64,... URI"


def _image_payloads(items: list[str]) -> list[str]:
    """The base64 payloads of image data URIs; 400 for anything else (remote URLs first)."""
    payloads = []
    for i, item in enumerate(items):
        # The scheme and media type are case-insensitive (RFC 2397); the payload is not.
        head = item[:32].lower()
        prefix = next((p for p in IMAGE_DATA_URI_PREFIXES if head.startswith(p)), None)
        if prefix is not None:
            payloads.append(item[len(prefix) :])
        elif head.startswith(("http://", "https://")):
            raise ApiError(
                400,
                "remote_image_url",
                f"input[{i}] is a remote URL: this vendor does not fetch images on a client's "
                f"behalf; send the image itself as {_DATA_URI_HINT}",
            )
        else:
            raise ApiError(
                400,
                "invalid_image_uri",
                f"input[{i}] is not {_DATA_URI_HINT} (with modality image every input item "
                "is an image)",
            )
    return payloads


def _check_texts(items: list[str]) -> None:
    """400 for an image among texts: it would be embedded as its characters, and charged."""
    for i, item in enumerate(items):
        if item[:11].lower() == "data:image/":
            raise ApiError(
                400,
                "mixed_modalities",
                f"input[{i}] is an image data URI but the modality is text: send images in "
                'their own request with "modality": "image"',
            )


@router.post("", response_model=OpenAIEmbeddingResponse, responses=_OPENAI_ERRORS)
async def embed_openai(
    request: Request,
    body: OpenAIEmbeddingRequest,
    meter: MeterDep,
    model: ModelDep,
    batcher: BatcherDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """OpenAI-compatible embeddings (texts; images with `modality: image` and data URIs).

    One input item = one query, charged all-or-nothing on the same budget, ledger and
    idempotency rules as the native routes; `usage` counts the queries charged.
    """
    if body.model != model.name:
        raise ApiError(
            404,
            "model_not_found",
            f"the model {body.model!r} does not exist here; this vendor serves "
            f"{model.name!r} (GET /v1/models)",
        )
    if body.dimensions is not None and body.dimensions != model.embed_dim:
        raise ApiError(
            400,
            "invalid_dimensions",
            f"{model.name} does not support dimensions={body.dimensions}: it embeds in "
            f"{model.embed_dim} dimensions only (omit dimensions or pass {model.embed_dim})",
        )
    items = body.items
    if body.modality == "image":
        kind, payloads = IMAGES, _image_payloads(items)
    else:
        _check_texts(items)
        kind, payloads = TEXTS, items
    charge = meter.charge(kind, body, len(items), idempotency_key, api="openai")

    def render(vectors: np.ndarray, charge: Charge) -> OpenAIEmbeddingResponse:
        return OpenAIEmbeddingResponse(
            data=[
                OpenAIEmbedding(index=i, embedding=encode_embedding(v, body.encoding_format))
                for i, v in enumerate(vectors)
            ],
            model=model.name,
            usage=OpenAIUsage(prompt_tokens=charge.queries, total_tokens=charge.queries),
        )

    return await metered_embeddings(
        request, charge, payloads, model, batcher, settings,
        normalize=True, render=render, field="input",
    )  # fmt: skip
