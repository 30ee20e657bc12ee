"""The black-box teacher behind any OpenAI-compatible embeddings server (``--api openai``).

The wire format is OpenAI's ``POST {base}/embeddings`` with ``{"model", "input",
"encoding_format"}``; images go the way Infinity's server takes them, ``"modality": "image"``
with each item a ``data:image/png;base64,...`` URI. ``{base}`` is the OpenAI base URL, the one
the ``openai`` SDK takes (``http://host:8000/v1`` for this project's vendor, ``http://host:7997``
for an Infinity server started without a URL prefix).

What such a server does not say (the model card: input size, embedding width, logit scale,
the weights' fingerprint, prices) comes from a card file and flags (``CardFacts``). When the
server's ``GET {base}/models`` entry is a full card (this project's vendor lists one), it is the
starting point and the facts given override it. Without a fingerprint the cache keys its
answers on the endpoint and the model id (``endpoint_fingerprint``).

Metering is read where a server states it: ``X-Queries-Charged`` / ``X-Budget-Remaining``
headers (this vendor sends both, and 0 for an idempotent replay); elsewhere one item counts as
one query charged. Each chunk carries the same ``Idempotency-Key`` as on the native API.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from client_distiller.teacher.base import (
    BeforeChunk,
    ChunkResult,
    OnChunk,
    WireEncoding,
    run_chunks,
)
from client_distiller.teacher.errors import TeacherError, VendorError
from client_distiller.teacher.http import HttpTeacherBase, header_int
from client_distiller.teacher.wire import chunk_idempotency_key, encode_text
from shared_schemas import IMAGES, TEXTS, EmbeddingEndpoint, ModelCard, UsageResponse

#: The OpenAI CLIP preprocessing, the default mean/std when a card does not state them (the
#: client sends images already resized, and the server normalizes them itself: these are
#: recorded, not applied).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
#: Items per request when the card does not say (Infinity's default batch size is 32).
DEFAULT_MAX_ITEMS = 32

#: The facts a client cannot do without: how big to send an image, how wide an answer is, and
#: the scale of the zero-shot logits (KD's soft targets and the ADiP head use it).
REQUIRED_FACTS = ("image_size", "embed_dim", "logit_scale")


class CardError(TeacherError):
    """The card facts are missing or malformed (a configuration mistake: never retried)."""


class CardFacts(BaseModel):
    """What the client must know about an OpenAI-compatible teacher, and may be told.

    Every field is optional here; ``image_size``, ``embed_dim`` and ``logit_scale`` must come
    from somewhere (the server's card, the card file, or the ``--card-*`` flags). A card file
    is a JSON object of these fields, e.g. ``{"image_size": 64, "embed_dim": 128,
    "logit_scale": 100}``; unknown keys are refused (a typo would silently be a default).
    """

    model_config = ConfigDict(extra="forbid")

    image_size: int | None = Field(None, ge=1)
    embed_dim: int | None = Field(None, ge=1)
    logit_scale: float | None = Field(None, gt=0)
    fingerprint: str | None = Field(None, min_length=8)
    image_mean: list[float] | None = Field(None, min_length=3, max_length=3)
    image_std: list[float] | None = Field(None, min_length=3, max_length=3)
    context_length: int | None = Field(None, ge=1)
    price_per_image_query: float | None = Field(None, ge=0)
    price_per_text_query: float | None = Field(None, ge=0)
    currency: str | None = None
    max_items_per_request: int | None = Field(None, ge=1)
    description: str | None = None

    @classmethod
    def from_file(cls, path: str | Path) -> CardFacts:
        """Read a card file (JSON).

        Raises:
            CardError: missing, not JSON, or with a field that is unknown or of the wrong type.
        """
        path = Path(path)
        try:
            return cls.model_validate(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise CardError(f"card file not found: {path}") from None
        except json.JSONDecodeError as exc:
            raise CardError(f"card file {path} is not JSON: {exc}") from None
        except ValidationError as exc:
            problem = exc.errors()[0]
            where = ".".join(str(p) for p in problem["loc"])
            raise CardError(f"card file {path}: {where}: {problem['msg']}") from None

    def merged(self, other: CardFacts) -> CardFacts:
        """These facts with ``other``'s given ones on top."""
        return self.model_copy(update=other.model_dump(exclude_none=True))


def endpoint_fingerprint(base_url: str | httpx.URL, model: str) -> str:
    """The stand-in fingerprint of a teacher whose weights nobody states: endpoint + model id.

    It names where the answers came from, not what computed them: the same model served at
    another URL is another cache, and new weights behind the same URL and id are not noticed.
    The ``url-`` prefix keeps it apart from a real sha256 of the weights.
    """
    url = httpx.URL(str(base_url))
    canonical = f"{url.scheme}://{url.netloc.decode('ascii').lower()}{url.path.rstrip('/')}"
    digest = hashlib.sha256(f"openai-endpoint\0{canonical}\0{model}".encode()).hexdigest()
    return f"url-{digest[:56]}"


def _image_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _decode(value: Any) -> np.ndarray:
    """One embedding from an OpenAI answer: base64 little-endian float32, or a float list."""
    if isinstance(value, str):
        return np.frombuffer(base64.b64decode(value), dtype="<f4").astype(np.float32)
    return np.asarray(value, dtype=np.float32)


class OpenAITeacher(HttpTeacherBase, WireEncoding):
    """Teacher behind an OpenAI-compatible ``/embeddings`` route (this vendor's, Infinity's...).

    Args:
        client: ``httpx.Client`` whose base URL is the OpenAI base URL (``.../v1`` for this
            vendor); it may carry the ``Authorization`` header itself instead of ``api_key``.
        api_key: sent as ``Authorization: Bearer`` (servers without keys ignore it).
        model: the model id to request; the first one ``GET /models`` lists when None.
        facts: card facts from a file and flags (they override the server's card).
        concurrency, max_retries, backoff_s, max_backoff_s, sleep: see ``HttpTeacherBase``.
    """

    def __init__(
        self,
        *,
        client: httpx.Client,
        api_key: str | None = None,
        model: str | None = None,
        facts: CardFacts | None = None,
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
        self.facts = facts or CardFacts()
        self._card: ModelCard | None = None

    # -- model card --------------------------------------------------------------------------

    def _listed(self) -> list[dict[str, Any]]:
        """``GET /models`` entries ([] when the server has no such route)."""
        try:
            resp = self._request("GET", "/models", json=None, headers={})
        except VendorError as exc:
            if exc.status_code in (404, 405):
                return []
            raise
        try:
            data = resp.json().get("data")
        except (ValueError, AttributeError):
            return []
        return [d for d in data if isinstance(d, dict) and "id" in d] if data else []

    @property
    def card(self) -> ModelCard:
        """The teacher's card: the server's card (if it lists one), then the given facts."""
        if self._card is None:
            self._card = self._resolve_card()
        return self._card

    def _resolve_card(self) -> ModelCard:
        listed = self._listed()
        if self.model is None:
            if not listed:
                raise CardError(
                    f"{self.client.base_url}/models lists no model: pass --model ID (the "
                    f"model id the server serves)"
                )
            entry = listed[0]
        else:
            matches = [d for d in listed if d["id"] == self.model]
            if listed and not matches:
                raise CardError(
                    f"model {self.model!r} not offered; {self.client.base_url} has "
                    f"{[d['id'] for d in listed]}"
                )
            entry = matches[0] if matches else {"id": self.model}
        model_id = str(entry["id"])
        try:
            base = CardFacts.model_validate(
                {k: v for k, v in entry.items() if k in CardFacts.model_fields}
            )
        except ValidationError:
            base = CardFacts()  # a server's own model entry that is not a card: ignore it
        facts = base.merged(self.facts)
        missing = [name for name in REQUIRED_FACTS if getattr(facts, name) is None]
        if missing:
            flags = ", ".join("--card-" + name.replace("_", "-") for name in missing)
            raise CardError(
                f"the server does not state the teacher's {', '.join(missing)}: give them with "
                f"{flags} or in a --card file"
            )
        fingerprint = facts.fingerprint or endpoint_fingerprint(self.client.base_url, model_id)
        description = facts.description or (
            f"{model_id} at {self.client.base_url} (OpenAI-compatible API"
            + ("" if facts.fingerprint else "; no fingerprint given: cached by endpoint + model")
            + ")"
        )
        return ModelCard(
            id=model_id,
            pretrained=None,
            trained=True,
            description=description,
            fingerprint=fingerprint,
            embed_dim=facts.embed_dim,  # type: ignore[arg-type] - checked above
            image_size=facts.image_size,  # type: ignore[arg-type]
            image_mean=facts.image_mean or list(CLIP_MEAN),
            image_std=facts.image_std or list(CLIP_STD),
            context_length=facts.context_length or 77,
            logit_scale=facts.logit_scale,  # type: ignore[arg-type]
            price_per_image_query=facts.price_per_image_query or 0.0,
            price_per_text_query=facts.price_per_text_query or 0.0,
            currency=facts.currency or "USD",
            max_items_per_request=facts.max_items_per_request
            or int(entry.get("max_items_per_request") or DEFAULT_MAX_ITEMS),
            max_request_bytes=int(entry.get("max_request_bytes") or 1 << 30),
        )

    def usage(self) -> UsageResponse | None:
        """The key's budget from ``GET {base}/usage`` where the server has this project's usage
        route (this vendor), else None (an OpenAI-compatible server need not meter)."""
        try:
            resp = self._request("GET", "/usage?limit=1", json=None, headers={})
        except VendorError as exc:
            if exc.status_code is not None and 400 <= exc.status_code < 500:
                return None
            raise
        try:
            return UsageResponse.model_validate(resp.json())
        except (ValueError, ValidationError):
            return None

    # -- protocol ----------------------------------------------------------------------------

    def embed_payloads(
        self,
        endpoint: EmbeddingEndpoint,
        payloads: Sequence[bytes] | Sequence[str],
        *,
        before_chunk: BeforeChunk | None = None,
        on_chunk: OnChunk | None = None,
    ) -> np.ndarray | None:
        """Send PNG bytes (images) or strings (texts) in chunks, several in flight.

        Returns:
            (n, embed_dim) float32 in payload order, None if there was nothing to send.
        """
        if endpoint not in (IMAGES, TEXTS):
            raise ValueError(f"unknown endpoint {endpoint!r}")
        return run_chunks(
            payloads,
            self.card.max_items_per_request,
            lambda start, items: self._send_chunk(endpoint, start, items),
            concurrency=self.concurrency,
            before_chunk=before_chunk,
            on_chunk=on_chunk,
        )

    def _send_chunk(self, endpoint: EmbeddingEndpoint, start: int, items: Sequence) -> ChunkResult:
        card = self.card
        body: dict[str, Any] = {"model": card.id, "encoding_format": "base64"}
        if endpoint == IMAGES:
            raw = [bytes(b) for b in items]
            body["input"] = [_image_uri(b) for b in raw]
            body["modality"] = "image"
        else:
            raw = [encode_text(t) for t in items]
            body["input"] = list(items)
        key = chunk_idempotency_key(card.fingerprint, endpoint, raw)
        resp = self._request("POST", "/embeddings", json=body, headers={"Idempotency-Key": key})
        request_id = resp.headers.get("X-Request-Id")
        try:
            data = resp.json()["data"]
            rows = {int(d["index"]): _decode(d["embedding"]) for d in data}
        except (ValueError, KeyError, TypeError) as exc:
            raise VendorError(
                f"POST /embeddings: not an OpenAI embeddings answer ({exc!r}): {resp.text[:200]}",
                request_id=request_id,
            ) from None
        if sorted(rows) != list(range(len(items))):
            raise VendorError(
                f"asked for {len(items)} embeddings, got indices {sorted(rows)[:10]}",
                request_id=request_id,
            )
        emb = np.empty((len(items), card.embed_dim), dtype=np.float32)
        for i, vec in rows.items():
            if vec.shape != (card.embed_dim,):
                raise VendorError(
                    f"embedding {i} has {vec.size} values, the card says embed_dim "
                    f"{card.embed_dim} (fix --card-embed-dim)",
                    request_id=request_id,
                )
            emb[i] = vec
        # The client's embeddings are L2-normalized rows. A server that already normalizes is
        # left bit for bit as it answered (a second normalization would move the last bits).
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        if not np.allclose(norms, 1.0, atol=1e-4):
            emb = (emb / np.maximum(norms, 1e-12)).astype(np.float32)
        charged = header_int(resp, "X-Queries-Charged")
        return ChunkResult(
            start=start,
            embeddings=emb,
            charged=len(items) if charged is None else charged,
            budget_remaining=header_int(resp, "X-Budget-Remaining"),
            request_id=request_id,
        )
