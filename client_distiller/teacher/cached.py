"""The caching, metering wrapper every command talks to."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image
from typing_extensions import Self

from client_distiller.teacher.base import ChunkResult
from client_distiller.teacher.budget import BudgetLedger
from client_distiller.teacher.cache import QueryCache
from client_distiller.teacher.errors import BudgetExhausted, QueryCapReached
from client_distiller.teacher.wire import encode_image, encode_text, item_digest
from shared_schemas import IMAGES, TEXTS


class CachedTeacher:
    """A teacher that pays for each distinct item at most once, within a hard query cap.

    Only cache misses reach the inner teacher (deduplicated, in first-appearance order, chunk
    by chunk); each chunk is written to the cache and the ledger the moment it arrives, so a
    killed run keeps everything it paid for. Chunks are cut from the miss list at fixed
    boundaries, so after a crash the chunks that were paid for but never stored are resent
    with the same bytes and the same ``Idempotency-Key`` and the vendor replays them for free.

    Args:
        teacher: the inner teacher (``RemoteTeacher`` or ``LocalTeacher``); must offer
            ``embed_payloads``.
        cache: where embeddings are stored.
        ledger: where spend is recorded.
        max_queries: hard cap on items sent by this object (None = no cap); checked before
            every chunk, raising ``QueryCapReached`` instead of exceeding it.
        stage: label for the ledger (e.g. ``fetch``, ``align``); may be reassigned.
    """

    def __init__(
        self,
        teacher,
        cache: QueryCache,
        ledger: BudgetLedger,
        *,
        max_queries: int | None = None,
        stage: str = "fetch",
    ) -> None:
        if max_queries is not None and max_queries < 0:
            raise ValueError("max_queries must be >= 0")
        self.teacher = teacher
        self.cache = cache
        self.ledger = ledger
        self.max_queries = max_queries
        self.stage = stage
        self.sent = 0  # items sent (and stored) by this object
        self.charged = 0  # queries the vendor says it charged for them
        self.cache_hits = 0
        self.budget_remaining: int | None = None
        self._reserved = 0  # items sent or in flight, for the cap check
        #: called with a count of items as they are resolved (cache hits, then each chunk), so a
        #: progress bar moves while a large call is still in flight.
        self.progress: Callable[[int], None] | None = None
        self._lock = threading.Lock()

    @property
    def card(self):
        """The inner teacher's model card."""
        return self.teacher.card

    # -- protocol ----------------------------------------------------------------------------

    def embed_images(self, images: Sequence[Image.Image], *, purpose: str = "images") -> np.ndarray:
        """Embed images through the cache (resized and PNG-encoded as the vendor receives them)."""
        size = self.card.image_size
        return self.embed_encoded(
            IMAGES, [encode_image(im, size) for im in images], purpose=purpose
        )

    def embed_texts(self, texts: Sequence[str], *, purpose: str = "texts") -> np.ndarray:
        """Embed texts through the cache."""
        return self.embed_encoded(TEXTS, list(texts), purpose=purpose)

    # -- cache-aware core --------------------------------------------------------------------

    def keys_for(self, endpoint: str, payloads: Sequence[bytes] | Sequence[str]) -> list[str]:
        """Cache keys of encoded items (PNG bytes for images, strings for texts)."""
        fp = self.card.fingerprint
        return [
            item_digest(fp, endpoint, encode_text(p) if isinstance(p, str) else p) for p in payloads
        ]

    def count_cached(
        self, endpoint: str, payloads: Sequence[bytes] | Sequence[str]
    ) -> tuple[int, int]:
        """(distinct items, distinct items already cached); sends and records nothing."""
        keys = set(self.keys_for(endpoint, payloads))
        return len(keys), sum(1 for k in keys if self.cache.contains(k))

    def embed_encoded(
        self, endpoint: str, payloads: Sequence[bytes] | Sequence[str], *, purpose: str
    ) -> np.ndarray:
        """Embed already-encoded items, paying only for distinct cache misses.

        Raises:
            QueryCapReached: the cap stopped the call; what was sent before is cached.
            BudgetExhausted, AuthenticationError, RateLimited, VendorError: from the vendor;
                every chunk that arrived before the error is cached.
        """
        keys = self.keys_for(endpoint, payloads)
        found = self.cache.get_many(dict.fromkeys(keys))
        miss_index: dict[str, int] = {}
        for i, k in enumerate(keys):
            if k not in found and k not in miss_index:
                miss_index[k] = i
        miss_keys = list(miss_index)
        hits = len(keys) - len(miss_keys)
        self.cache_hits += hits
        if self.progress is not None and hits:
            self.progress(hits)
        if hits:
            self.ledger.record(
                stage=self.stage,
                purpose=purpose,
                endpoint=endpoint,
                fingerprint=self.card.fingerprint,
                cache_hits=hits,
                budget_remaining=None,
            )

        capped = False
        to_send = miss_keys
        if self.max_queries is not None:
            allowed = max(0, self.max_queries - self._reserved)
            if len(miss_keys) > allowed:
                to_send, capped = miss_keys[:allowed], True

        def before_chunk(n: int) -> None:
            with self._lock:
                if self.max_queries is not None and self._reserved + n > self.max_queries:
                    raise QueryCapReached(self._cap_message(len(miss_keys)))
                self._reserved += n

        def on_chunk_for(sent_keys: list[str]):
            return lambda res: on_chunk(sent_keys, res)

        def on_chunk(sent_keys: list[str], res: ChunkResult) -> None:
            chunk_keys = sent_keys[res.start : res.start + len(res.embeddings)]
            self.cache.put_many(dict(zip(chunk_keys, res.embeddings, strict=False)))
            for k, v in zip(chunk_keys, res.embeddings, strict=False):
                found[k] = v
            if self.progress is not None:
                self.progress(len(chunk_keys))
            with self._lock:
                self.sent += len(chunk_keys)
                self.charged += res.charged
                if res.budget_remaining is not None:
                    # Concurrent chunks arrive out of charge order: the lowest report is newest.
                    self.budget_remaining = min(
                        res.budget_remaining,
                        self.budget_remaining
                        if self.budget_remaining is not None
                        else res.budget_remaining,
                    )
            self.ledger.record(
                stage=self.stage,
                purpose=purpose,
                endpoint=endpoint,
                fingerprint=self.card.fingerprint,
                sent=len(chunk_keys),
                charged=res.charged,
                budget_remaining=res.budget_remaining,
                request_id=res.request_id,
            )

        def send(keys_: list[str]) -> None:
            self.teacher.embed_payloads(
                endpoint,
                [payloads[miss_index[k]] for k in keys_],
                before_chunk=before_chunk,
                on_chunk=on_chunk_for(keys_),
            )

        if to_send:
            try:
                send(to_send)
            except BudgetExhausted as exc:
                # Nothing is in flight any more, and a 402 charges nothing: give the refused
                # requests' items back to the cap before spending what the budget has left.
                with self._lock:
                    self._reserved = self.sent
                self._spend_the_rest(exc, to_send, found, send)
                raise
        if capped:
            raise QueryCapReached(self._cap_message(len(miss_keys)))
        dim = self.card.embed_dim
        if not keys:
            return np.zeros((0, dim), dtype=np.float32)
        return np.stack([found[k] for k in keys]).astype(np.float32, copy=False)

    def _spend_the_rest(
        self,
        exc: BudgetExhausted,
        wanted: list[str],
        found: dict,
        send: Callable[[list[str]], None],
    ) -> None:
        """After a 402, buy as many of the unsent items as the budget left still pays for.

        The refused chunk was bigger than what remains; smaller requests use up the budget
        exactly instead of leaving it stranded. Stops when the vendor reports nothing left or
        a smaller request is refused as well.
        """
        remaining = exc.remaining
        while remaining:
            # Recomputed each round: part of a refused round may have arrived and been stored.
            unsent = [k for k in wanted if k not in found]
            if not unsent:
                return
            batch = unsent[:remaining]
            try:
                send(batch)
            except BudgetExhausted as again:
                with self._lock:
                    self._reserved = self.sent
                if again.remaining is None or again.remaining >= remaining:
                    return
                remaining = again.remaining
                continue
            remaining = self.budget_remaining or 0

    def _cap_message(self, needed: int) -> str:
        return (
            f"--max-queries {self.max_queries} reached: {self._reserved} sent in this run, "
            f"{needed} distinct items were needed by this call; everything sent is cached, "
            f"rerun with a higher cap to continue"
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close the cache, the ledger and the inner teacher's HTTP client (if any)."""
        client = getattr(self.teacher, "client", None)
        if client is not None:
            client.close()
        self.cache.close()
        self.ledger.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
