"""Dynamic batching: one inference thread per process serves every request.

Routes enqueue already-preprocessed tensors and await a future; the worker takes jobs of one
kind (images or texts) until it has ``max_batch`` items or ``max_wait_ms`` has passed since the
first job arrived, runs the model once per ``max_batch`` chunk, and resolves each job's future.
A job cancelled while it waits (its client went away) is dropped before the model runs.
Jobs already queued are taken without waiting; an empty queue waits (up to the deadline) only
while traffic is concurrent, i.e. the previous batch held more than one job: a lone client
would otherwise pay ``max_wait_ms`` on every request for a batch that never fills. With
``max_wait_ms=0`` a batch is whatever queued up while the model ran.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from shared_schemas import IMAGES, EmbeddingEndpoint


@dataclass
class Job:
    kind: EmbeddingEndpoint
    inputs: torch.Tensor  # images: [n, 3, H, W]; texts: [n, context_length] token ids
    normalize: bool
    future: Future[np.ndarray] = field(default_factory=Future)

    @property
    def size(self) -> int:
        return int(self.inputs.shape[0])


class Batcher:
    """Owns the model; ``submit`` is thread-safe and returns a Future of a [n, D] float32 array."""

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        max_batch: int,
        max_wait_ms: float,
        debug_delay_ms: float = 0.0,
        on_batch: Callable[[str, int], None] | None = None,
        on_queue_depth: Callable[[int], None] | None = None,
    ) -> None:
        self.model = model
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self.debug_delay_s = debug_delay_ms / 1000.0
        self._on_batch = on_batch or (lambda kind, n: None)
        self._on_queue_depth = on_queue_depth or (lambda n: None)
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._held: deque[Job] = deque()  # jobs of the other kind, kept for the next batch
        self._thread = threading.Thread(target=self._run, name="inference", daemon=True)
        self._stopping = False
        self._last_jobs = 0  # jobs in the previous batch: >1 means concurrent traffic

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping = True
        self._queue.put(None)
        self._thread.join(timeout)

    def submit(
        self, kind: EmbeddingEndpoint, inputs: torch.Tensor, normalize: bool
    ) -> Future[np.ndarray]:
        """Queue ``inputs`` for the worker; the future resolves to their [n, D] embeddings."""
        job = Job(kind, inputs, normalize)
        if self._stopping:
            job.future.set_exception(RuntimeError("inference worker is stopping"))
            return job.future
        self._queue.put(job)
        self._on_queue_depth(self._queue.qsize() + len(self._held))
        return job.future

    async def embed(
        self, kind: EmbeddingEndpoint, inputs: torch.Tensor, normalize: bool
    ) -> np.ndarray:
        """``submit`` awaited from the event loop: [n, D] little-endian float32."""
        return await asyncio.wrap_future(self.submit(kind, inputs, normalize))

    # -- worker ------------------------------------------------------------------------------

    def _next(self, timeout: float | None) -> Job | None:
        if self._held:
            return self._held.popleft()
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def _from_queue(self, timeout: float) -> Job | None:
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def _run(self) -> None:
        while True:
            first = self._next(None)
            if first is None:
                if self._stopping:
                    self._fail_remaining()
                    return
                continue
            jobs, items = [first], first.size
            # held jobs of this kind join first, in arrival order; the others keep waiting
            keep: deque[Job] = deque()
            while self._held:
                job = self._held.popleft()
                if job.kind == first.kind and items < self.max_batch:
                    jobs.append(job)
                    items += job.size
                else:
                    keep.append(job)
            self._held = keep
            deadline = time.monotonic() + self.max_wait_s
            while items < self.max_batch:
                # Jobs already queued join without waiting (so max_wait_ms=0 still batches
                # whatever piled up while the model ran); only an empty queue waits.
                # Read the queue only: a held job of the other kind popped here would be
                # re-held at once, spinning until the deadline.
                queued = self._from_queue(0)
                if queued is None:
                    left = deadline - time.monotonic()
                    if left <= 0 or self._last_jobs <= 1:
                        break
                    queued = self._from_queue(left)
                if queued is None:
                    if self._stopping:
                        break
                    continue
                if queued.kind != first.kind:
                    self._held.append(queued)
                    # drain order: held jobs are served before newer queue entries
                    continue
                jobs.append(queued)
                items += queued.size
            self._last_jobs = len(jobs)
            self._on_queue_depth(self._queue.qsize() + len(self._held))
            self._execute(first.kind, jobs)

    def _execute(self, kind: EmbeddingEndpoint, jobs: list[Job]) -> None:
        # A job whose request was abandoned while it queued (its future cancelled) is dropped
        # here; the others are marked running, so from now on they can no longer be cancelled.
        jobs = [j for j in jobs if j.future.set_running_or_notify_cancel()]
        if not jobs:
            return
        try:
            if self.debug_delay_s:
                time.sleep(self.debug_delay_s)
            inputs = torch.cat([j.inputs for j in jobs])  # [N, ...]
            device = next(self.model.parameters()).device
            outs = []
            with torch.inference_mode():
                for chunk in inputs.split(self.max_batch):
                    encode: Any = (
                        self.model.encode_image if kind == IMAGES else self.model.encode_text
                    )
                    outs.append(encode(chunk.to(device)).float().cpu())  # [b, D]
                    self._on_batch(kind, int(chunk.shape[0]))
            feats = torch.cat(outs)  # [N, D]
        except Exception as exc:  # noqa: BLE001 -- one bad batch fails its jobs, never the worker
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        start = 0
        for job in jobs:
            out = feats[start : start + job.size]  # [n, D]
            start += job.size
            if job.normalize:
                out = torch.nn.functional.normalize(out, dim=-1)
            job.future.set_result(out.numpy().astype("<f4", copy=True))

    def _fail_remaining(self) -> None:
        while True:
            job = self._next(0)
            if job is None:
                return
            if job.future.set_running_or_notify_cancel():
                job.future.set_exception(RuntimeError("inference worker stopped"))
