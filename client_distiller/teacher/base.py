"""The teacher contracts, and the chunk runner both teacher implementations use.

Two protocols, because callers need two different things:

- ``Teacher``: embeds images and texts (``card``, ``embed_images``, ``embed_texts``). What the
  plan, the experiment runner and the online views call. ``CachedTeacher`` is the one every
  command uses; ``RemoteTeacher`` and ``LocalTeacher`` implement it too.
- ``PayloadTeacher``: sends already-encoded items, chunk by chunk (``card``,
  ``embed_payloads``). What ``CachedTeacher`` wraps: it needs each chunk as it arrives (to
  store it at once) and a hook before each chunk is sent (the query cap).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image

from client_distiller.teacher.wire import encode_image
from shared_schemas import IMAGES, TEXTS, EmbeddingEndpoint, ModelCard, UsageResponse


@runtime_checkable
class Teacher(Protocol):
    """Anything that embeds images and texts into the teacher's joint space."""

    @property
    def card(self) -> ModelCard:
        """The teacher's model card (fingerprint, sizes, logit scale, prices)."""
        ...

    def embed_images(self, images: Sequence[Image.Image], *, purpose: str = "images") -> np.ndarray:
        """Embed images; returns an (n, embed_dim) float32 array of L2-normalized rows."""
        ...

    def embed_texts(self, texts: Sequence[str], *, purpose: str = "texts") -> np.ndarray:
        """Embed texts; returns an (n, embed_dim) float32 array of L2-normalized rows."""
        ...


@runtime_checkable
class PayloadTeacher(Protocol):
    """A teacher that embeds items exactly as they go on the wire, one chunk (request) at a time."""

    @property
    def card(self) -> ModelCard:
        """The teacher's model card."""
        ...

    def embed_payloads(
        self,
        endpoint: EmbeddingEndpoint,
        payloads: Sequence[bytes] | Sequence[str],
        *,
        before_chunk: BeforeChunk | None = None,
        on_chunk: OnChunk | None = None,
    ) -> np.ndarray | None:
        """Embed PNG bytes (images) or strings (texts) in chunks.

        Args:
            endpoint: ``IMAGES`` or ``TEXTS``.
            payloads: the items, exactly as sent.
            before_chunk: called with a chunk's size before it is sent; may raise to stop.
            on_chunk: called with each ``ChunkResult`` as it arrives.

        Returns:
            (n, embed_dim) float32 in payload order, or None when ``payloads`` is empty.
        """
        ...


@runtime_checkable
class MeteredTeacher(Protocol):
    """A payload teacher that is paid per query and can report the key's own budget."""

    def usage(self) -> UsageResponse | None:
        """The key's budget and totals (free to ask); None when the server has no usage API."""
        ...


class WireEncoding:
    """``Teacher``'s two methods for a ``PayloadTeacher``: encode as the wire does, then embed.

    Images are resized to the card's input size and PNG-encoded (``wire.encode_image``), so
    every teacher sends, caches and embeds the same bytes for the same view.
    """

    card: ModelCard

    def embed_payloads(
        self,
        endpoint: EmbeddingEndpoint,
        payloads: Sequence[bytes] | Sequence[str],
        *,
        before_chunk: BeforeChunk | None = None,
        on_chunk: OnChunk | None = None,
    ) -> np.ndarray | None:
        raise NotImplementedError

    def embed_images(self, images: Sequence[Image.Image], *, purpose: str = "images") -> np.ndarray:
        """Resize, PNG-encode and embed images (uncached; see ``CachedTeacher``)."""
        size = self.card.image_size
        return self._or_empty(
            self.embed_payloads(IMAGES, [encode_image(im, size) for im in images])
        )

    def embed_texts(self, texts: Sequence[str], *, purpose: str = "texts") -> np.ndarray:
        """Embed texts (uncached; see ``CachedTeacher``)."""
        return self._or_empty(self.embed_payloads(TEXTS, list(texts)))

    def _or_empty(self, arr: np.ndarray | None) -> np.ndarray:
        if arr is None:
            return np.zeros((0, self.card.embed_dim), dtype=np.float32)
        return arr


@dataclass(frozen=True)
class ChunkResult:
    """What one request (one chunk of items) returned.

    Attributes:
        start: index of the chunk's first item in the caller's payload list.
        embeddings: (n, embed_dim) float32.
        charged: queries the vendor charged for it (0 on an idempotent replay).
        budget_remaining: the vendor's remaining budget after it, if reported.
        request_id: the vendor's request id, if any.
    """

    start: int
    embeddings: np.ndarray
    charged: int
    budget_remaining: int | None = None
    request_id: str | None = None


#: ``before_chunk(n)`` is called before a chunk of n items is sent; it may raise to stop.
BeforeChunk = Callable[[int], None]
#: ``on_chunk(result)`` is called (in the caller's thread) as each chunk arrives.
OnChunk = Callable[[ChunkResult], None]


def run_chunks(
    payloads: Sequence,
    chunk_size: int,
    send: Callable[[int, Sequence], ChunkResult],
    *,
    concurrency: int = 1,
    before_chunk: BeforeChunk | None = None,
    on_chunk: OnChunk | None = None,
) -> np.ndarray | None:
    """Send ``payloads`` in chunks, several in flight, and gather the embeddings in order.

    On the first failure no new chunk is started; chunks already in flight are still awaited
    and handed to ``on_chunk`` (they are paid for), then the first error is raised.

    Args:
        payloads: items to send (bytes or str).
        chunk_size: most items per request.
        send: ``send(start, items) -> ChunkResult``; runs in worker threads.
        concurrency: chunks in flight at once.
        before_chunk: called before each chunk is submitted (e.g. the query cap check).
        on_chunk: called with each result as it arrives.

    Returns:
        (n, embed_dim) float32 array in payload order, or None when ``payloads`` is empty.
    """
    n = len(payloads)
    if n == 0:
        return None
    starts = list(range(0, n, chunk_size))
    out: np.ndarray | None = None
    error: BaseException | None = None
    pending: set[Future] = set()
    next_i = 0

    def _take(fut: Future) -> None:
        nonlocal out, error
        try:
            res: ChunkResult = fut.result()
        except BaseException as exc:  # noqa: BLE001 - re-raised below, after draining
            error = error or exc
            return
        if out is None:
            out = np.empty((n, res.embeddings.shape[1]), dtype=np.float32)
        out[res.start : res.start + len(res.embeddings)] = res.embeddings
        if on_chunk is not None:
            try:
                on_chunk(res)
            except BaseException as exc:  # noqa: BLE001
                error = error or exc

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        try:
            while next_i < len(starts) or pending:
                while error is None and next_i < len(starts) and len(pending) < concurrency:
                    s = starts[next_i]
                    items = payloads[s : s + chunk_size]
                    if before_chunk is not None:
                        try:
                            before_chunk(len(items))
                        except BaseException as exc:  # noqa: BLE001
                            error = exc
                            break
                    pending.add(pool.submit(send, s, items))
                    next_i += 1
                if error is not None and not pending:
                    break
                if not pending:
                    continue
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in sorted(done, key=id):
                    _take(fut)
        except BaseException:
            # KeyboardInterrupt etc.: do not start anything new, let in-flight chunks finish.
            for fut in pending:
                fut.cancel()
            raise
    if error is not None:
        raise error
    return out
