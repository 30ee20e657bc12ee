"""The black-box teacher: the vendor's metered HTTP API."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Sequence

import httpx
import numpy as np

from client_distiller.teacher.base import (
    BeforeChunk,
    ChunkResult,
    OnChunk,
    WireEncoding,
    run_chunks,
)
from client_distiller.teacher.errors import VendorError
from client_distiller.teacher.http import HttpTeacherBase
from client_distiller.teacher.wire import chunk_idempotency_key, encode_text
from shared_schemas import (
    IMAGES,
    TEXTS,
    EmbeddingEndpoint,
    EmbeddingResponse,
    ImageEmbeddingRequest,
    ModelCard,
    ModelListResponse,
    TextEmbeddingRequest,
    UsageResponse,
    decode_embedding,
)


class RemoteTeacher(HttpTeacherBase, WireEncoding):
    """Teacher behind the vendor's API (``/v1/models``, ``/v1/embeddings/{images,texts}``).

    The injected client carries the base URL and the transport, so tests can pass a client on
    an ``httpx.MockTransport``, on the vendor app in process, or on a real server. Requests are
    the wire contract's models (``ImageEmbeddingRequest``, ``TextEmbeddingRequest``); error
    bodies are read as ``ErrorResponse``; retries and errors are ``HttpTeacherBase``'s.

    Args:
        client: configured ``httpx.Client`` (base URL; it may carry the ``Authorization``
            header itself instead of ``api_key``).
        api_key: the vendor API key, sent as ``Authorization: Bearer`` with every request.
        model: id of the model to use; the first one the vendor lists when None.
        concurrency: chunks in flight at once.
        max_retries: retries per chunk for 429 / 5xx / timeouts / connection errors.
        backoff_s: first backoff; doubles each retry (with jitter), capped by ``max_backoff_s``.
        max_backoff_s: longest wait between two attempts (a longer Retry-After is still honoured).
        sleep: how to wait (injected so tests do not really sleep).
    """

    def __init__(
        self,
        *,
        client: httpx.Client,
        api_key: str | None = None,
        model: str | None = None,
        concurrency: int = 4,
        max_retries: int = 6,
        backoff_s: float = 0.25,
        max_backoff_s: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(
            client=client,
            api_key=api_key,
            concurrency=concurrency,
            max_retries=max_retries,
            backoff_s=backoff_s,
            max_backoff_s=max_backoff_s,
            sleep=sleep,
        )
        self.model = model
        self._card: ModelCard | None = None

    # -- model card --------------------------------------------------------------------------

    @property
    def card(self) -> ModelCard:
        """The vendor's model card (read once from ``GET /v1/models``)."""
        if self._card is None:
            resp = self._request("GET", "/v1/models", json=None, headers={})
            cards = ModelListResponse.model_validate(resp.json()).data
            if not cards:
                raise VendorError("the vendor lists no model")
            if self.model is None:
                self._card = cards[0]
            else:
                match = [c for c in cards if c.id == self.model]
                if not match:
                    raise VendorError(
                        f"model {self.model!r} not offered; the vendor has {[c.id for c in cards]}"
                    )
                self._card = match[0]
        return self._card

    def usage(self) -> UsageResponse:
        """The key's own budget and totals (``GET /v1/usage``; not metered)."""
        resp = self._request("GET", "/v1/usage?limit=1", json=None, headers={})
        return UsageResponse.model_validate(resp.json())

    # -- protocol ----------------------------------------------------------------------------

    # -- chunks ------------------------------------------------------------------------------

    def embed_payloads(
        self,
        endpoint: EmbeddingEndpoint,
        payloads: Sequence[bytes] | Sequence[str],
        *,
        before_chunk: BeforeChunk | None = None,
        on_chunk: OnChunk | None = None,
    ) -> np.ndarray | None:
        """Send already-encoded items (PNG bytes or texts) in chunks, several in flight.

        Args:
            endpoint: ``IMAGES`` or ``TEXTS``.
            payloads: PNG bytes (images) or strings (texts), exactly as they go on the wire.
            before_chunk: called before each chunk is sent; may raise to stop.
            on_chunk: called with each ``ChunkResult`` as it arrives.

        Returns:
            (n, embed_dim) float32 in payload order, None if there was nothing to send.
        """
        if endpoint not in (IMAGES, TEXTS):
            raise ValueError(f"unknown endpoint {endpoint!r}")
        card = self.card
        return run_chunks(
            payloads,
            card.max_items_per_request,
            lambda start, items: self._send_chunk(endpoint, start, items),
            concurrency=self.concurrency,
            before_chunk=before_chunk,
            on_chunk=on_chunk,
        )

    def _send_chunk(self, endpoint: EmbeddingEndpoint, start: int, items: Sequence) -> ChunkResult:
        card = self.card
        request: ImageEmbeddingRequest | TextEmbeddingRequest
        if endpoint == IMAGES:
            raw = [bytes(b) for b in items]
            request = ImageEmbeddingRequest(
                images=[base64.b64encode(b).decode("ascii") for b in raw],
                normalize=True,
                encoding_format="base64",
            )
        else:
            raw = [encode_text(t) for t in items]
            request = TextEmbeddingRequest(
                texts=list(items), normalize=True, encoding_format="base64"
            )
        key = chunk_idempotency_key(card.fingerprint, endpoint, raw)
        resp = self._request(
            "POST",
            f"/v1/embeddings/{endpoint}",
            json=request.model_dump(mode="json"),
            headers={"Idempotency-Key": key},
        )
        parsed = EmbeddingResponse.model_validate(resp.json())
        if parsed.fingerprint != card.fingerprint:
            # The vendor swapped weights under us: caching these under the old fingerprint
            # would poison the cache.
            raise VendorError(
                f"vendor fingerprint changed ({card.fingerprint[:12]} -> "
                f"{parsed.fingerprint[:12]}); restart the run",
                request_id=parsed.request_id,
            )
        if len(parsed.data) != len(items):
            raise VendorError(
                f"asked for {len(items)} embeddings, got {len(parsed.data)}",
                request_id=parsed.request_id,
            )
        emb = np.empty((len(items), card.embed_dim), dtype=np.float32)
        for item in parsed.data:
            emb[item.index] = decode_embedding(item.embedding)
        return ChunkResult(
            start=start,
            embeddings=emb,
            charged=parsed.usage.queries,
            budget_remaining=parsed.budget.remaining,
            request_id=parsed.request_id,
        )
