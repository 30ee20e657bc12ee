"""The on-disk query cache: one entry per embedded item, never evicted."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import diskcache
import numpy as np


class QueryCache:
    """Teacher embeddings on disk, keyed by ``wire.item_digest`` (fingerprint, endpoint, bytes).

    Values are raw little-endian float32 bytes (never pickled objects), so reading a cache can
    never execute code and any language can read it.

    Args:
        directory: cache folder (created if missing); a ``diskcache`` SQLite store lives there.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        # eviction_policy "none" + no size limit: a paid-for embedding is never dropped.
        self._cache = diskcache.Cache(
            str(self.directory / "embeddings"), eviction_policy="none", size_limit=2**62
        )

    def get_many(self, keys: Iterable[str]) -> dict[str, np.ndarray]:
        """Look keys up; returns only the hits."""
        hits: dict[str, np.ndarray] = {}
        for k in keys:
            raw = self._cache.get(k, default=None, read=False)
            if raw is not None:
                hits[k] = np.frombuffer(bytes(raw), dtype="<f4").astype(np.float32)
        return hits

    def contains(self, key: str) -> bool:
        """Whether an item is cached."""
        return key in self._cache

    def put_many(self, items: Mapping[str, np.ndarray]) -> None:
        """Store several embeddings in one transaction (a chunk is stored whole or not at all)."""
        with self._cache.transact():
            for k, v in items.items():
                self._cache.set(k, np.asarray(v, dtype="<f4").tobytes())

    def __len__(self) -> int:
        return len(self._cache)

    def close(self) -> None:
        """Close the underlying store."""
        self._cache.close()
