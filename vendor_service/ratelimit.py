"""Per-key token buckets, shared by every process that serves the same store.

One interface, ``take(key_id, rps, burst) -> seconds to wait`` (0: allowed), three backends:

- :class:`SharedFileBuckets` (the SQLite store, one machine): a memory-mapped file next to the
  ledger, one fixed slot per key, under an ``flock``: every worker process of the machine draws
  from the same bucket, at a few microseconds per call (no database write, no fsync).
- ``PostgresRateLimiter`` (``vendor_service.metering.postgres``, many replicas): one atomic
  call of a SQL function on an UNLOGGED table with the database's clock. PostgreSQL rather than
  Redis: the replicas already share it, it needs no second service to deploy and secure, and a
  token bucket (rate *and* burst, the semantics keys have always had) is one row update there,
  where the ``limits`` library offers fixed and moving windows only.
- :class:`TokenBuckets`: in memory, one process (tests, and anything without a store).

A bucket starts full (``burst`` tokens) and refills at ``rps`` tokens per second.
``take`` may block for a database round trip: call it off the event loop.
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import mmap
import os
import struct
import threading
import time
from pathlib import Path
from typing import Protocol


class RateLimiter(Protocol):
    """What the routes need: one token from a key's bucket."""

    def take(self, key_id: str, rps: float, burst: int) -> float:
        """0 when the request may go, else the seconds until a token is there."""
        ...

    def close(self) -> None: ...


def _refill(tokens: float, last: float, now: float, rps: float, burst: int) -> float:
    # A clock that went backwards (a reboot under a kept file) refills nothing and loses nothing.
    return min(float(burst), tokens + max(0.0, now - last) * rps)


class TokenBuckets:
    """One bucket per key id in this process's memory."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last time)
        self._lock = threading.Lock()

    def take(self, key_id: str, rps: float, burst: int, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(key_id, (float(burst), now))
            tokens = _refill(tokens, last, now, rps, burst)
            if tokens >= 1.0:
                self._buckets[key_id] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key_id] = (tokens, now)
            return (1.0 - tokens) / rps

    def close(self) -> None:
        pass


class SharedFileBuckets:
    """Token buckets in a memory-mapped file shared by the processes of one machine.

    The file is a table of ``slots`` slots of 32 bytes (a 16-byte digest of the key id, tokens,
    last refill on ``CLOCK_MONOTONIC``, which is one clock for every process of a boot). A key
    takes the first free or own slot of 8 from its hash; when all 8 belong to others, the one
    refilled longest ago is taken over (that key starts again from a full bucket): with 65,536
    slots that needs thousands of active keys. ``serve`` recreates the file at start.
    """

    SLOT = struct.Struct("<16sdd")
    PROBES = 8

    def __init__(self, path: Path, *, slots: int = 65_536) -> None:
        self.path = path
        self._slots = slots
        size = slots * self.SLOT.size
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            if os.fstat(fd).st_size != size:
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    if os.fstat(fd).st_size != size:
                        os.ftruncate(fd, 0)
                        os.ftruncate(fd, size)  # zeros: every slot free
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
            self._map = mmap.mmap(fd, size)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        # flock excludes other processes; threads of this one share its descriptor.
        self._lock = threading.Lock()

    def take(self, key_id: str, rps: float, burst: int, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        digest = hashlib.blake2b(key_id.encode(), digest_size=16).digest()
        start = int.from_bytes(digest[:8], "little") % self._slots
        with self._lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                slot, tokens, last = self._find(digest, start, now, burst)
                tokens = _refill(tokens, last, now, rps, burst)
                wait = 0.0
                if tokens >= 1.0:
                    tokens -= 1.0
                else:
                    wait = (1.0 - tokens) / rps
                self.SLOT.pack_into(self._map, slot * self.SLOT.size, digest, tokens, now)
                return wait
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _find(self, digest: bytes, start: int, now: float, burst: int) -> tuple[int, float, float]:
        oldest, oldest_at = start, math.inf
        for i in range(self.PROBES):
            slot = (start + i) % self._slots
            owner, tokens, last = self.SLOT.unpack_from(self._map, slot * self.SLOT.size)
            if owner == digest:
                return slot, tokens, last
            if owner == bytes(16):
                return slot, float(burst), now
            if last < oldest_at:
                oldest, oldest_at = slot, last
        return oldest, float(burst), now

    def close(self) -> None:
        if self._fd >= 0:
            self._map.close()
            os.close(self._fd)
            self._fd = -1


#: Retry-After never exceeds a day (a tiny per-key rps could otherwise ask for centuries/inf).
MAX_RETRY_AFTER_S = 86_400


def retry_after_header(wait_s: float) -> str:
    """Retry-After as an integer number of seconds, at least 1."""
    if not math.isfinite(wait_s) or wait_s > MAX_RETRY_AFTER_S:
        return str(MAX_RETRY_AFTER_S)
    return str(max(1, math.ceil(wait_s)))
