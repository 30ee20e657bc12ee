"""What every HTTP teacher shares: one retry policy and one mapping of answers to errors.

``RemoteTeacher`` (this project's native API) and ``OpenAITeacher`` (any OpenAI-compatible
embeddings server) differ only in the bytes of a request and the shape of its answer; the
retries (429 / 409 / 5xx / timeouts, backoff with jitter honouring ``Retry-After``) and the
exception hierarchy are defined here once.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import httpx

from client_distiller.teacher.errors import (
    AuthenticationError,
    BudgetExhausted,
    RateLimited,
    TeacherError,
    VendorError,
)
from shared_schemas import ErrorResponse

log = logging.getLogger("client_distiller.teacher")

#: Statuses worth retrying: rate limits, a concurrent twin of the same idempotent request, and
#: server-side failures that a later attempt may not hit.
RETRY_STATUSES = frozenset({409, 429, 500, 502, 503, 504})


class HttpTeacherBase:
    """An injected ``httpx.Client`` plus the retry policy.

    Args:
        client: configured ``httpx.Client`` (base URL; it may carry the ``Authorization``
            header itself instead of ``api_key``).
        api_key: sent as ``Authorization: Bearer`` with every request.
        concurrency: chunks in flight at once.
        max_retries: retries per request for 429 / 409 / 5xx / timeouts / connection errors.
        backoff_s: first backoff; doubles each retry (with jitter), capped by ``max_backoff_s``.
        max_backoff_s: longest wait between two attempts (a longer Retry-After is still honoured).
        sleep: how to wait (injected so tests do not really sleep).
    """

    def __init__(
        self,
        *,
        client: httpx.Client,
        api_key: str | None = None,
        concurrency: int = 4,
        max_retries: int = 6,
        backoff_s: float = 0.25,
        max_backoff_s: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self._auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.concurrency = max(1, concurrency)
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.sleep = sleep

    def _request(
        self, method: str, url: str, *, json: dict[str, Any] | None, headers: dict[str, str]
    ) -> httpx.Response:
        """One call with the retry policy: 429/409/5xx/timeouts back off and retry."""
        attempt = 0
        headers = {**self._auth, **headers}
        while True:
            try:
                resp = self.client.request(method, url, json=json, headers=headers)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                if attempt >= self.max_retries:
                    where = self.client.base_url.join(url)
                    raise VendorError(
                        f"{method} {where}: {type(exc).__name__} after {attempt + 1} attempts: "
                        f"{exc} (is the server running at {self.client.base_url}?)"
                    ) from exc
                self._wait(attempt, None, f"{type(exc).__name__}")
                attempt += 1
                continue
            if resp.status_code < 400:
                return resp
            if resp.status_code in RETRY_STATUSES and attempt < self.max_retries:
                self._wait(attempt, resp.headers.get("Retry-After"), f"HTTP {resp.status_code}")
                attempt += 1
                continue
            raise error_for(resp, attempts=attempt + 1)

    def _wait(self, attempt: int, retry_after: str | None, why: str) -> None:
        delay = min(self.max_backoff_s, self.backoff_s * (2**attempt))
        delay *= 0.5 + random.random() / 2  # jitter, so parallel chunks do not retry in lockstep
        if retry_after is not None:
            # an HTTP-date Retry-After does not parse: fall back to our own backoff
            with contextlib.suppress(ValueError):
                delay = max(delay, float(retry_after))
        log.info("teacher: %s, retrying in %.2fs (attempt %d)", why, delay, attempt + 1)
        self.sleep(delay)


def header_int(resp: httpx.Response, name: str) -> int | None:
    """An integer response header (``X-Queries-Charged``, ``X-Budget-Remaining``), if sent."""
    try:
        return int(resp.headers[name])
    except (KeyError, ValueError):
        return None


def _detail(resp: httpx.Response) -> str:
    """The error message of a body in this project's shape or OpenAI's, else the raw text."""
    try:
        return ErrorResponse.model_validate_json(resp.content).error.message
    except ValueError:
        pass
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"]  # OpenAI's {"error": {"message", "type", ...}}
        if "detail" in body:  # FastAPI's default (Infinity's validation errors)
            return str(body["detail"])[:300]
    return resp.text[:300]  # not an error schema (a proxy's page, a crash)


def error_for(resp: httpx.Response, *, attempts: int) -> TeacherError:
    """Map a final non-2xx answer to the exception hierarchy."""
    code = resp.status_code
    request_id = resp.headers.get("X-Request-Id")
    msg = f"HTTP {code}: {_detail(resp)}"
    kw: dict[str, Any] = {"status_code": code, "request_id": request_id}
    if code in (401, 403):
        return AuthenticationError(msg, **kw)
    if code == 402:
        return BudgetExhausted(msg, remaining=header_int(resp, "X-Budget-Remaining"), **kw)
    if code == 429:
        return RateLimited(f"{msg} (after {attempts} attempts)", **kw)
    if code >= 500:
        return VendorError(f"{msg} (after {attempts} attempts)", **kw)
    if code == 404:
        return VendorError(
            f"{msg} ({resp.request.method} {resp.request.url} does not exist: check --endpoint "
            f"and --api)",
            **kw,
        )
    return VendorError(msg, **kw)
