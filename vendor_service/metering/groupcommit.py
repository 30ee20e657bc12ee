"""Group commit: one writer thread per store commits every pending operation in one transaction.

The policy, stated once: the writer blocks for the first pending operation, then takes every
other one already queued (at most ``max_batch``), applies them in order inside **one**
transaction (each in its own savepoint, so one op's error or refusal undoes that op alone),
commits once (one fsync on SQLite with ``synchronous = FULL``; one WAL flush on PostgreSQL), and
only then resolves the futures. A lone request is committed at once: nothing waits for a batch
to fill. Under load, operations queue while the previous commit's fsync runs, so the batch size
grows with the load by itself (measured in ``benchmarks/bench_store.py``).

A process killed mid-batch loses the whole uncommitted transaction and answers none of its
requests (no future resolved before the commit), so nothing is ever delivered uncharged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from vendor_service.metering.store import ChargeOp, ChargeOutcome, Op, RefundOp, StoreClosed

R = TypeVar("R")
log = logging.getLogger(__name__)

#: Most operations in one transaction: bounds a batch's latency and its lock time.
MAX_BATCH = 256


@dataclass(frozen=True)
class Failed:
    """The outcome of an op that raised: only its own future fails."""

    error: BaseException


#: ``run_batch(ops) -> one result (or Failed) per op``, committed durably before it returns.
BatchRunner = Callable[[Sequence[Op[Any]]], list[Any]]

_STOP = object()


class GroupCommitter:
    """The writer thread of one store (see the module docstring for the policy)."""

    def __init__(self, run_batch: BatchRunner, *, name: str, max_batch: int = MAX_BATCH) -> None:
        self._run_batch = run_batch
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = False
        self._close_lock = threading.Lock()
        #: Sizes of the committed batches (for benchmarks and tests); bounded.
        self.batch_sizes: list[int] = []
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, op: Op[R]) -> Future[R]:
        """Queue ``op``; the future resolves after its transaction committed."""
        fut: Future[R] = Future()
        with self._close_lock:
            if self._closed:
                raise StoreClosed("the store is closed")
            self._queue.put((op, fut))
        return fut

    def close(self) -> None:
        """Commit what is queued, then stop the writer."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        if threading.current_thread() is not self._thread:
            self._thread.join(60)

    def _loop(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
            # An op whose caller gave up before it started is dropped, never applied.
            live = [(op, fut) for op, fut in batch if fut.set_running_or_notify_cancel()]
            if not live:
                continue
            try:
                results = self._run_batch([op for op, _ in live])
            except BaseException as exc:  # noqa: BLE001 - not committed: every op failed
                log.warning("ledger batch of %d ops failed: %s", len(live), exc)
                for _, fut in live:
                    fut.set_exception(exc)
                continue
            if len(self.batch_sizes) < 100_000:
                self.batch_sizes.append(len(live))
            for (_, fut), result in zip(live, results, strict=True):
                if isinstance(result, Failed):
                    fut.set_exception(result.error)
                else:
                    fut.set_result(result)


async def await_op(submit: Callable[[Op[R]], Future[R]], op: Op[R]) -> R:
    """Await ``op`` on the event loop (no thread hop). Cancellation never leaves a charge taken:
    an op not started yet is dropped; a charge that commits anyway is refunded."""
    fut = submit(op)
    try:
        return await asyncio.shield(asyncio.wrap_future(fut))
    except asyncio.CancelledError:
        if not fut.cancel():  # already running or done: its effect may be committed
            fut.add_done_callback(lambda done: _undo(submit, op, done))
        raise


def _undo(submit: Callable[[Op[Any]], Future[Any]], op: Op[Any], done: Future[Any]) -> None:
    if not isinstance(op, ChargeOp) or done.cancelled() or done.exception() is not None:
        return
    if done.result().outcome is ChargeOutcome.CHARGED:
        # Shutting down (closed): the owner's release refunds it instead.
        with contextlib.suppress(StoreClosed):
            submit(RefundOp(op.key_id, op.request_id))
