"""Build the teacher a command talks to from its options."""

from __future__ import annotations

from pathlib import Path

import httpx

from client_distiller.teacher.budget import BudgetLedger
from client_distiller.teacher.cache import QueryCache
from client_distiller.teacher.cached import CachedTeacher
from client_distiller.teacher.errors import TeacherError
from client_distiller.teacher.local import LocalTeacher
from client_distiller.teacher.remote import RemoteTeacher


class TeacherConfigError(TeacherError):
    """The options do not describe a usable teacher (no endpoint, both kinds, ...)."""


def make_http_client(
    endpoint: str, api_key: str | None, *, timeout_s: float = 120.0
) -> httpx.Client:
    """An ``httpx.Client`` for the vendor: base URL, bearer key, generous read timeout."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return httpx.Client(
        base_url=endpoint.rstrip("/"),
        headers=headers,
        timeout=httpx.Timeout(timeout_s, connect=10.0),
    )


def open_teacher(
    *,
    endpoint: str | None,
    api_key: str | None,
    cache_dir: Path,
    local_model: str | None = None,
    local_pretrained: str | None = None,
    max_queries: int | None = None,
    stage: str = "fetch",
    concurrency: int = 4,
) -> CachedTeacher:
    """The cached, metered teacher for a command.

    Args:
        endpoint: vendor base URL (e.g. ``http://127.0.0.1:8000``); None with a local model.
        api_key: the vendor API key.
        cache_dir: the cache directory (embeddings + ledger).
        local_model: open_clip architecture for an in-process white-box teacher instead.
        local_pretrained: its pretrained tag or checkpoint path.
        max_queries: hard cap on queries this process may send.
        stage: ledger label.
        concurrency: chunks in flight (remote only).

    Raises:
        TeacherConfigError: neither or both of ``endpoint`` and ``local_model`` given.
    """
    if endpoint and local_model:
        raise TeacherConfigError("give either --endpoint or --local-teacher, not both")
    if not endpoint and not local_model:
        raise TeacherConfigError(
            "no teacher: pass --endpoint URL (or set VL2V_ENDPOINT) with --api-key, "
            "or --local-teacher MODEL"
        )
    if local_model:
        inner = LocalTeacher(model=local_model, pretrained=local_pretrained)
    else:
        if not api_key:
            raise TeacherConfigError("no API key: pass --api-key or set VL2V_API_KEY")
        inner = RemoteTeacher(client=make_http_client(endpoint, api_key), concurrency=concurrency)
    cache_dir = Path(cache_dir)
    return CachedTeacher(
        inner, QueryCache(cache_dir), BudgetLedger(cache_dir), max_queries=max_queries, stage=stage
    )
