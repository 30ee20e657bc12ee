"""What a fetch plan should cost, computed independently of ``fetch``: for real-vendor tests."""

from __future__ import annotations

from pathlib import Path

import httpx

from client_distiller.data import DomainFolder
from client_distiller.plan import build_plan, iter_image_batches
from client_distiller.teacher import QueryCache, encode_image, item_digest


def distinct_items(base_url: str, data: Path, target: str, views: int) -> set[str]:
    """Cache keys of every distinct item the plan for ``target`` needs, per the vendor's card."""
    card = httpx.get(base_url + "/v1/models", timeout=10).json()["data"][0]
    plan = build_plan(DomainFolder(data), target, views=views)
    fp, size = card["fingerprint"], card["image_size"]
    keys = {item_digest(fp, "texts", q.text.encode()) for q in plan.text_queries}
    for _, _, images in iter_image_batches(plan, size):
        keys |= {item_digest(fp, "images", encode_image(im, size)) for im in images}
    return keys


def cached_count(cache: Path, keys: set[str]) -> int:
    """How many of ``keys`` the client's cache in ``cache`` holds."""
    qc = QueryCache(cache)
    try:
        return sum(qc.contains(k) for k in keys)
    finally:
        qc.close()
