"""The caching, metering wrapper every command talks to."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
from PIL import Image
from typing_extensions import Self

from client_distiller.teacher.base import ChunkResult, MeteredTeacher, PayloadTeacher
from client_distiller.teacher.budget import BudgetLedger
from client_distiller.teacher.cache import QueryCache
from client_distiller.teacher.errors import BudgetExhausted, QueryCapReached
from client_distiller.teacher.wire import encode_image, encode_text, item_digest
from shared_schemas import IMAGES, TEXTS, EmbeddingEndpoint, ModelCard, UsageResponse


@dataclass(frozen=True)
class TeacherStats:
    """What a ``CachedTeacher`` has done so far (a snapshot).

    Attributes:
        sent: items sent to the inner teacher (and stored).
        charged: queries the vendor says it charged for them (0 for idempotent replays).
        cache_hits: items answered from the cache instead.
        budget_remaining: the vendor's remaining budget as last reported, if it reported one.
    """

    sent: int = 0
    charged: int = 0
    cache_hits: int = 0
    budget_remaining: int | None = None


class CachedTeacher:
    """A teacher that pays for each distinct item at most once, within a hard query cap.

    Only cache misses reach the inner teacher (deduplicated, in first-appearance order, chunk
    by chunk); each chunk is written to the cache and the ledger the moment it arrives, so a
    killed run keeps everything it paid for. Chunks are cut from the miss list at fixed
    boundaries, so after a crash the chunks that were paid for but never stored are resent
    with the same bytes and the same ``Idempotency-Key`` and the vendor replays them for free.

    Besides the ``Teacher`` protocol it offers what the commands need: ``stats`` (sent, charged,
    cache hits, budget), ``usage`` (the key's budget, when the inner teacher is metered),
    ``keys_for`` / ``is_cached`` (what a plan would cost), the whole-plan memo (``recall`` /
    ``remember`` / ``record_cache_hits``) and a live progress hook (``reporting``).

    Args:
        teacher: the inner teacher (``RemoteTeacher`` or ``LocalTeacher``).
        cache: where embeddings are stored.
        ledger: where spend is recorded.
        max_queries: hard cap on items sent by this object (None = no cap); checked before
            every chunk, raising ``QueryCapReached`` instead of exceeding it.
        stage: label for the ledger (e.g. ``fetch``, ``run``); may be reassigned.
    """

    def __init__(
        self,
        teacher: PayloadTeacher,
        cache: QueryCache,
        ledger: BudgetLedger,
        *,
        max_queries: int | None = None,
        stage: str = "fetch",
    ) -> None:
        if max_queries is not None and max_queries < 0:
            raise ValueError("max_queries must be >= 0")
        self._inner = teacher
        self._cache = cache
        self._ledger = ledger
        self.max_queries = max_queries
        self.stage = stage
        self._sent = 0  # items sent (and stored) by this object
        self._charged = 0  # queries the vendor says it charged for them
        self._cache_hits = 0
        self._budget_remaining: int | None = None
        self._sent_by_purpose: dict[str, int] = {}
        self._reserved = 0  # items sent or in flight, for the cap check
        # Called with a count of items as they are resolved (cache hits, then each chunk), so a
        # progress bar moves while a large call is still in flight.
        self._progress: Callable[[int], None] | None = None
        self._lock = threading.Lock()

    @property
    def card(self) -> ModelCard:
        """The inner teacher's model card."""
        return self._inner.card

    @property
    def inner(self) -> PayloadTeacher:
        """The teacher behind the cache."""
        return self._inner

    # -- stats ---------------------------------------------------------------------------------

    def stats(self) -> TeacherStats:
        """A snapshot of what this object has sent, been charged and served from the cache."""
        with self._lock:
            return TeacherStats(self._sent, self._charged, self._cache_hits, self._budget_remaining)

    def sent_by_purpose(self) -> dict[str, int]:
        """Items sent so far per purpose (``train-views``, ``eval-images``, ``class-texts``...)."""
        with self._lock:
            return dict(self._sent_by_purpose)

    @property
    def sent(self) -> int:
        """Items sent to the inner teacher by this object."""
        return self._sent

    @property
    def charged(self) -> int:
        """Queries the vendor charged for them."""
        return self._charged

    @property
    def cache_hits(self) -> int:
        """Items answered from the cache."""
        return self._cache_hits

    @property
    def budget_remaining(self) -> int | None:
        """The vendor's remaining budget as last reported by a response (None before one)."""
        return self._budget_remaining

    @property
    def metered(self) -> bool:
        """Whether the inner teacher is paid per query (a vendor) rather than run in process."""
        return isinstance(self._inner, MeteredTeacher)

    def usage(self) -> UsageResponse | None:
        """The key's budget and totals from the vendor (free); None for an unmetered teacher."""
        if isinstance(self._inner, MeteredTeacher):
            return self._inner.usage()
        return None

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

    # -- cache checks ------------------------------------------------------------------------

    def keys_for(
        self, endpoint: EmbeddingEndpoint, payloads: Sequence[bytes] | Sequence[str]
    ) -> list[str]:
        """Cache keys of encoded items (PNG bytes for images, strings for texts)."""
        fp = self.card.fingerprint
        return [
            item_digest(fp, endpoint, encode_text(p) if isinstance(p, str) else p) for p in payloads
        ]

    def is_cached(self, key: str) -> bool:
        """Whether the item with this cache key is stored (sends and records nothing)."""
        return self._cache.contains(key)

    # -- the whole-plan memo -----------------------------------------------------------------

    def recall(self, key: str, rows: int) -> np.ndarray | None:
        """A stored block of ``rows`` answers under ``key`` (e.g. a whole plan), or None.

        A block of another size (a stale or foreign entry) counts as absent. Records nothing:
        the caller accounts for the items it stands for with ``record_cache_hits``.
        """
        dim = self.card.embed_dim
        block = self._cache.get_many([key]).get(key)
        if block is None or block.size != rows * dim:
            return None
        return block.reshape(rows, dim)

    def remember(self, key: str, answers: np.ndarray) -> None:
        """Store a block of answers (rows x embed_dim) under one key, for ``recall``."""
        self._cache.put_many({key: np.asarray(answers, dtype=np.float32)})

    def record_cache_hits(self, purpose: str, endpoint: EmbeddingEndpoint, n: int) -> None:
        """Count ``n`` items answered without asking the cache item by item (a ``recall``)."""
        if n <= 0:
            return
        with self._lock:
            self._cache_hits += n
        self._ledger.record(
            stage=self.stage,
            purpose=purpose,
            endpoint=endpoint,
            fingerprint=self.card.fingerprint,
            cache_hits=n,
            budget_remaining=None,
        )

    # -- progress ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def reporting(self, progress: Callable[[int], None]) -> Iterator[None]:
        """Call ``progress(n)`` as items resolve (cache hits, then each arriving chunk)."""
        self._progress = progress
        try:
            yield
        finally:
            self._progress = None

    # -- cache-aware core --------------------------------------------------------------------

    def embed_encoded(
        self,
        endpoint: EmbeddingEndpoint,
        payloads: Sequence[bytes] | Sequence[str],
        *,
        purpose: str,
    ) -> np.ndarray:
        """Embed already-encoded items, paying only for distinct cache misses.

        Raises:
            QueryCapReached: the cap stopped the call; what was sent before is cached.
            BudgetExhausted, AuthenticationError, RateLimited, VendorError: from the vendor;
                every chunk that arrived before the error is cached.
        """
        keys = self.keys_for(endpoint, payloads)
        found = self._cache.get_many(dict.fromkeys(keys))
        miss_index: dict[str, int] = {}
        for i, k in enumerate(keys):
            if k not in found and k not in miss_index:
                miss_index[k] = i
        miss_keys = list(miss_index)
        hits = len(keys) - len(miss_keys)
        if hits:
            self.record_cache_hits(purpose, endpoint, hits)
            if self._progress is not None:
                self._progress(hits)

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

        def on_chunk(sent_keys: list[str], res: ChunkResult) -> None:
            chunk_keys = sent_keys[res.start : res.start + len(res.embeddings)]
            self._cache.put_many(dict(zip(chunk_keys, res.embeddings, strict=False)))
            for k, v in zip(chunk_keys, res.embeddings, strict=False):
                found[k] = v
            if self._progress is not None:
                self._progress(len(chunk_keys))
            with self._lock:
                self._sent += len(chunk_keys)
                self._sent_by_purpose[purpose] = self._sent_by_purpose.get(purpose, 0) + len(
                    chunk_keys
                )
                self._charged += res.charged
                if res.budget_remaining is not None:
                    # Concurrent chunks arrive out of charge order: the lowest report is newest.
                    self._budget_remaining = min(
                        res.budget_remaining,
                        self._budget_remaining
                        if self._budget_remaining is not None
                        else res.budget_remaining,
                    )
            self._ledger.record(
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
            # One call holds one kind of item (all bytes or all strings).
            items = cast(
                "Sequence[bytes] | Sequence[str]", [payloads[miss_index[k]] for k in keys_]
            )
            self._inner.embed_payloads(
                endpoint,
                items,
                before_chunk=before_chunk,
                on_chunk=lambda res: on_chunk(keys_, res),
            )

        if to_send:
            try:
                send(to_send)
            except BudgetExhausted as exc:
                # Nothing is in flight any more, and a 402 charges nothing: give the refused
                # requests' items back to the cap before spending what the budget has left.
                with self._lock:
                    self._reserved = self._sent
                self._spend_the_rest(exc, to_send, found, send)
                # The refusal's own figures are stale now (the rest of the budget was spent
                # after it): report the budget as the last answer left it.
                unsent = sum(1 for k in to_send if k not in found)
                remaining = self._budget_remaining_now(exc)
                raise BudgetExhausted(
                    f"HTTP 402: the key's budget cannot pay for the rest: {remaining} queries "
                    f"remain, {unsent} items of this call are unpaid",
                    remaining=remaining,
                    needed=unsent,
                    status_code=exc.status_code,
                    request_id=exc.request_id,
                ) from exc
        if capped:
            raise QueryCapReached(self._cap_message(len(miss_keys)))
        dim = self.card.embed_dim
        if not keys:
            return np.zeros((0, dim), dtype=np.float32)
        return np.stack([found[k] for k in keys]).astype(np.float32, copy=False)

    def _budget_remaining_now(self, exc: BudgetExhausted) -> int | None:
        """The lowest remaining budget reported so far (by answers or the refusal)."""
        reports = [r for r in (exc.remaining, self._budget_remaining) if r is not None]
        return min(reports) if reports else None

    def _spend_the_rest(
        self,
        exc: BudgetExhausted,
        wanted: list[str],
        found: dict[str, np.ndarray],
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
                    self._reserved = self._sent
                if again.remaining is None or again.remaining >= remaining:
                    return
                remaining = again.remaining
                continue
            remaining = self._budget_remaining or 0

    def _cap_message(self, needed: int) -> str:
        return (
            f"--max-queries {self.max_queries} reached: {self._reserved} sent in this run, "
            f"{needed} distinct items were needed by this call; everything sent is cached, "
            f"rerun with a higher cap to continue"
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close the cache and the ledger (the inner teacher belongs to whoever made it)."""
        self._cache.close()
        self._ledger.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
