"""Build the teacher a command talks to from its options."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

import httpx
from pydantic import SecretStr

from client_distiller.teacher.base import PayloadTeacher
from client_distiller.teacher.budget import BudgetLedger
from client_distiller.teacher.cache import QueryCache
from client_distiller.teacher.cached import CachedTeacher
from client_distiller.teacher.errors import TeacherError
from client_distiller.teacher.local import LocalTeacher
from client_distiller.teacher.openai import CardFacts, OpenAITeacher
from client_distiller.teacher.remote import RemoteTeacher

#: The wire formats a remote teacher speaks: this project's (``/v1/embeddings/images|texts``,
#: card at ``/v1/models``) or OpenAI's (``{base}/embeddings``, as Infinity serves it).
Api = Literal["native", "openai"]
NATIVE: Api = "native"
OPENAI: Api = "openai"


class TeacherConfigError(TeacherError):
    """The options do not describe a usable teacher (no endpoint, both kinds, ...)."""


def check_endpoint(endpoint: str, api: Api = NATIVE) -> str:
    """The endpoint, if it can be a server's base URL; a mistake fails here, not after retries.

    Raises:
        TeacherConfigError: no ``http://``/``https://`` scheme or no host; for the native API,
            a URL ending in ``/v1`` (the client adds ``/v1/...`` itself).
    """
    url = endpoint.strip()
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise TeacherConfigError(f"--endpoint {endpoint!r} is not a URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise TeacherConfigError(
            f"--endpoint {endpoint!r} needs http:// or https:// and a host, "
            f"e.g. http://{url.split('://')[-1] or '127.0.0.1:8000'}"
        )
    if api == NATIVE and parsed.path.rstrip("/").endswith("/v1"):
        base = url.rstrip("/").removesuffix("/v1")
        raise TeacherConfigError(
            f"--endpoint {endpoint!r} ends in /v1: give the server's base URL ({base}), the "
            f"client adds /v1/... itself (or use --api openai, whose base URL ends in /v1)"
        )
    return url


def make_http_client(endpoint: str, *, timeout_s: float = 120.0) -> httpx.Client:
    """An ``httpx.Client`` for the vendor: base URL and a generous read timeout."""
    return httpx.Client(
        base_url=endpoint.rstrip("/"), timeout=httpx.Timeout(timeout_s, connect=10.0)
    )


@contextlib.contextmanager
def open_teacher(
    *,
    cache_dir: str | os.PathLike[str],
    endpoint: str | None = None,
    api_key: str | SecretStr | None = None,
    local_model: str | None = None,
    local_pretrained: str | None = None,
    clip_config_dirs: Sequence[str | os.PathLike[str]] = (),
    max_queries: int | None = None,
    stage: str = "fetch",
    concurrency: int = 4,
    http_client: httpx.Client | None = None,
    api: Api = NATIVE,
    model: str | None = None,
    card: CardFacts | None = None,
) -> Iterator[CachedTeacher]:
    """The cached, metered teacher for a command, as a context manager.

    The factory owns what it creates: on exit it closes the cache, the ledger and the HTTP
    client it opened. An injected ``http_client`` stays open (it belongs to the caller); it
    carries its own base URL and transport, so tests can put the vendor app in process.

    Args:
        cache_dir: the cache directory (embeddings + ledger).
        endpoint: vendor base URL (e.g. ``http://127.0.0.1:8000``); not needed with
            ``http_client``.
        api_key: the vendor API key (sent as ``Authorization: Bearer``).
        local_model: open_clip architecture for an in-process white-box teacher instead.
        local_pretrained: its pretrained tag or checkpoint path.
        clip_config_dirs: folders of open_clip model configs for ``local_model`` (besides the
            built-in ones, see ``model_io.register_model_configs``).
        max_queries: hard cap on queries this process may send.
        stage: ledger label.
        concurrency: chunks in flight (remote only).
        http_client: a ready ``httpx.Client`` for the vendor instead of one made from
            ``endpoint``.
        api: the vendor's wire format: ``native`` (``RemoteTeacher``) or ``openai``
            (``OpenAITeacher``, any OpenAI-compatible server; ``endpoint`` is its base URL).
        model: the model id at the vendor (default: the first it lists).
        card: card facts for ``openai`` (file and flags; they override the server's card).

    Raises:
        TeacherConfigError: neither or both of a vendor and ``local_model`` given, no key, a
            malformed endpoint, or card facts for the native API.
    """
    remote = bool(endpoint) or http_client is not None
    if remote and local_model:
        raise TeacherConfigError("give either --endpoint or --local-teacher, not both")
    if not remote and not local_model:
        raise TeacherConfigError(
            "no teacher: pass --endpoint URL (or set VL2V_ENDPOINT) with --api-key, "
            "or --local-teacher MODEL"
        )
    key = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
    if endpoint and http_client is None:
        endpoint = check_endpoint(endpoint, api)
    if card is not None and card.model_dump(exclude_none=True) and api != OPENAI:
        raise TeacherConfigError(
            "card facts (--card, --card-*) are for --api openai: the native API states the card"
        )
    with contextlib.ExitStack() as stack:
        inner: PayloadTeacher
        if local_model:
            inner = LocalTeacher(
                model=local_model, pretrained=local_pretrained, config_dirs=clip_config_dirs
            )
        else:
            if not key and api == NATIVE:
                raise TeacherConfigError("no API key: pass --api-key or set VL2V_API_KEY")
            if http_client is None:
                assert endpoint is not None
                http_client = stack.enter_context(make_http_client(endpoint))
            if api == OPENAI:
                # An OpenAI-compatible server may need no key (a local Infinity).
                inner = OpenAITeacher(
                    client=http_client,
                    api_key=key,
                    model=model,
                    facts=card,
                    concurrency=concurrency,
                )
            else:
                inner = RemoteTeacher(
                    client=http_client, api_key=key, model=model, concurrency=concurrency
                )
        cache_dir = Path(cache_dir)
        teacher = CachedTeacher(
            inner,
            QueryCache(cache_dir),
            BudgetLedger(cache_dir),
            max_queries=max_queries,
            stage=stage,
        )
        yield stack.enter_context(teacher)  # closes the cache and the ledger
