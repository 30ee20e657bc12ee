"""The exact bytes the client sends for one item, shared by the remote teacher and the cache.

The cache key is a hash of these bytes, so every path that sends or looks up an image must go
through :func:`encode_image` (same resize, same PNG settings) or cache hits would silently miss.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence

from PIL import Image

from shared_schemas import EmbeddingEndpoint


def encode_image(image: Image.Image, size: int) -> bytes:
    """Resize an image to ``size`` x ``size`` RGB and encode it as PNG.

    Args:
        image: any PIL image (converted to RGB here).
        size: the teacher's input size (``card.image_size``).

    Returns:
        PNG file bytes; identical input gives identical bytes (fixed compression settings).
    """
    if image.mode != "RGB":
        image = image.convert("RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    # Fixed settings: optimize=True would make the bytes depend on encoder heuristics.
    image.save(buf, format="PNG", compress_level=6, optimize=False)
    return buf.getvalue()


def encode_text(text: str) -> bytes:
    """The bytes a text is identified by (UTF-8)."""
    return text.encode("utf-8")


def item_digest(fingerprint: str, endpoint: EmbeddingEndpoint, payload: bytes) -> str:
    """Cache key of one item: sha256 over (model fingerprint, endpoint, exact bytes sent)."""
    h = hashlib.sha256()
    for part in (fingerprint.encode(), endpoint.encode()):
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    h.update(len(payload).to_bytes(8, "little"))
    h.update(payload)
    return h.hexdigest()


def chunk_idempotency_key(
    fingerprint: str, endpoint: EmbeddingEndpoint, payloads: Sequence[bytes]
) -> str:
    """Stable ``Idempotency-Key`` of one chunk: sha256 over its items' bytes, in order.

    The same chunk resent (a retry, or a rerun after a crash) carries the same key, so the vendor
    replays its stored answer instead of charging again.
    """
    h = hashlib.sha256()
    h.update(f"{fingerprint}\0{endpoint}\0{len(payloads)}\0".encode())
    for p in payloads:
        h.update(len(p).to_bytes(8, "little"))
        h.update(p)
    return "vl2v-" + h.hexdigest()
