"""Per-key token bucket, in memory: each worker process limits on its own.

With W workers a key can therefore get up to W times its rate; that is documented, and a
shared limiter (e.g. Redis) would replace this class without touching routes.
"""

from __future__ import annotations

import math
import threading
import time


class TokenBuckets:
    """One bucket per key id; ``take`` returns 0 when allowed, else seconds to wait."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last time)
        self._lock = threading.Lock()

    def take(self, key_id: str, rps: float, burst: int, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(key_id, (float(burst), now))
            tokens = min(float(burst), tokens + (now - last) * rps)
            if tokens >= 1.0:
                self._buckets[key_id] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key_id] = (tokens, now)
            return (1.0 - tokens) / rps


#: Retry-After never exceeds a day (a tiny per-key rps could otherwise ask for centuries/inf).
MAX_RETRY_AFTER_S = 86_400


def retry_after_header(wait_s: float) -> str:
    """Retry-After as an integer number of seconds, at least 1."""
    if not math.isfinite(wait_s) or wait_s > MAX_RETRY_AFTER_S:
        return str(MAX_RETRY_AFTER_S)
    return str(max(1, math.ceil(wait_s)))
