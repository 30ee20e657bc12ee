"""Pure-ASGI middleware: request ids, the body's gate and limit, HEAD, metrics, no stack traces.

Order of checks for a request with a body (``Content-Length > 0`` or chunked), all before a
byte of it is read, so an unauthenticated upload costs the server nothing:

1. no route serves this path and method: the router answers 404/405 without reading it;
2. ``Content-Length`` above the route's limit: 413;
3. no valid credentials (an API key, or the admin token): 401, or 429 for an address that
   keeps failing (``Expect: 100-continue`` is therefore answered only for authenticated
   requests: uvicorn sends the 100 on the first read of the body);
4. then the body is read, counting streamed bytes against the same limit (413).

A response sent before its request's body was read whole closes the connection (the unread
rest cannot be told from the next request). ``HEAD`` on a ``GET`` route runs the ``GET`` and
the server drops the body. Every response gets ``X-Request-Id``; an unhandled exception becomes
a JSON 500.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote_plus

from starlette.concurrency import run_in_threadpool
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vendor_service.deps import Authenticator, client_address, is_admin_token, parse_bearer
from vendor_service.errors import ApiError, error_response
from vendor_service.metrics import Metrics
from vendor_service.settings import VendorSettings

log = logging.getLogger("vendor_service")

#: Largest body of a route that is not an embedding route (admin JSON bodies are tiny):
#: unauthenticated or not, no such request can make the server hold megabytes.
CONTROL_BODY_BYTES = 64 * 1024


class RouteTable:
    """Every path the app serves and its methods, for ``Allow``, ``HEAD`` and the body gate.

    Built on first use from the app's mounted routes (FastAPI's ``iter_route_contexts``
    resolves included routers, whose routes the plain router list hides).
    """

    def __init__(self, app: Any) -> None:
        self._app = app
        self._routes: list[tuple[re.Pattern[str], frozenset[str]]] | None = None

    def _build(self) -> list[tuple[re.Pattern[str], frozenset[str]]]:
        from fastapi.routing import iter_route_contexts

        routes = []
        for rc in iter_route_contexts(self._app.routes):
            path, methods = rc.path_format or rc.path, rc.methods
            if path and methods:
                routes.append((compile_path(path)[0], frozenset(methods)))
        return routes

    def methods(self, path: str) -> frozenset[str] | None:
        """The methods served at ``path`` (``HEAD`` wherever ``GET`` is); None: no route."""
        if self._routes is None:
            self._routes = self._build()
        found: set[str] = set()
        matched = False
        for regex, methods in self._routes:
            if regex.match(path):
                matched = True
                found |= methods
        if not matched:
            return None
        if "GET" in found:
            found.add("HEAD")
        return frozenset(found)

    def allow(self, path: str) -> str:
        """The ``Allow`` header for ``path``."""
        return ", ".join(sorted(self.methods(path) or ()))


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value)
    return None


def _has_body(scope: Scope) -> bool:
    length = _header(scope, b"content-length")
    if length is not None:
        return length.strip() not in (b"", b"0")
    return _header(scope, b"transfer-encoding") is not None


class VendorMiddleware:
    """Outermost layer of the app (see the module docstring for the order of checks)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: VendorSettings,
        metrics: Metrics,
        authenticator: Authenticator,
        routes: RouteTable,
        embedding_paths: Iterable[str] = (),
    ) -> None:
        self.app = app
        self.settings = settings
        self.max_request_bytes = settings.limits.max_request_bytes
        self.metrics = metrics
        self.auth = authenticator
        self.routes = routes
        self.embedding_paths = frozenset(embedding_paths)

    def body_limit(self, path: str) -> int:
        """The most body bytes a request to ``path`` may send."""
        if path in self.embedding_paths:
            return self.max_request_bytes
        return min(self.max_request_bytes, CONTROL_BODY_BYTES)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = "req_" + uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        path, method = scope["path"], scope["method"]
        status_holder: dict[str, Any] = {"status": 500, "started": False}
        # The body is "done" once read whole; a request without one has nothing left unread.
        has_body = _has_body(scope)
        body_state = {"done": not has_body}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                status_holder["started"] = True
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                if not body_state["done"]:
                    headers.append((b"connection", b"close"))
                message = {**message, "headers": headers}
            await send(message)

        app_scope = scope
        if method == "HEAD":
            methods = self.routes.methods(path)
            if methods is not None and "GET" in methods:
                # The server (uvicorn) still sees HEAD in its own scope and drops the body.
                app_scope = {**scope, "method": "GET"}
        try:
            app_receive: Receive = receive
            if has_body:
                methods = self.routes.methods(path)
                if methods is not None and method in methods:
                    refused = await self._gate(scope, path)
                    if refused is not None:
                        resp = error_response(
                            refused.status,
                            refused.code,
                            refused.message,
                            request_id,
                            refused.headers,
                        )
                        await resp(scope, receive, send_with_id)
                        return
                    limit = self.body_limit(path)
                    body_receive = await _read_body(receive, limit)
                    if body_receive is None:
                        resp = error_response(
                            413,
                            "request_too_large",
                            f"request body exceeds {limit} bytes",
                            request_id,
                        )
                        await resp(scope, receive, send_with_id)
                        return
                    body_state["done"] = True
                    app_receive = body_receive
            await self.app(app_scope, app_receive, send_with_id)
        except Exception:
            log.exception("unhandled error in request %s", request_id)
            if not status_holder["started"]:
                resp = error_response(500, "internal_error", "internal server error", request_id)
                await resp(scope, receive, send_with_id)
        finally:
            route = app_scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(label, method, str(status_holder["status"])).inc()
            self.metrics.latency.labels(label).observe(time.perf_counter() - started)

    async def _gate(self, scope: Scope, path: str) -> ApiError | None:
        """Why a body for ``path`` must not be read (413, 401, 429), or None."""
        limit = self.body_limit(path)
        length = _header(scope, b"content-length")
        if length is not None:
            try:
                too_large = int(length) > limit
            except ValueError:
                too_large = True
            if too_large:
                return ApiError(413, "request_too_large", f"request body exceeds {limit} bytes")
        try:
            token = parse_bearer((_header(scope, b"authorization") or b"").decode("latin-1"))
        except ApiError as missing:
            return missing
        if is_admin_token(self.settings, token) or self.auth.cached(token) is not None:
            return None
        app = scope["app"]
        client = client_address(scope)
        try:
            self.auth.check_blocked(client)
        except ApiError as blocked:
            return blocked
        key = await run_in_threadpool(app.state.store.authenticate, token)
        if key is None or key.revoked:
            return self.auth.failed(
                app.state.rate_limits,
                client,
                ApiError(401, "invalid_key", "unknown or revoked API key"),
            )
        self.auth.remember(token, key)
        return None


async def _read_body(receive: Receive, limit: int) -> Receive | None:
    """A receive that replays the whole body read now, or None when it exceeds ``limit``."""
    chunks: list[bytes] = []
    total = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            first: Message = message
            break
        body = message.get("body", b"")
        total += len(body)
        if total > limit:
            return None
        chunks.append(body)
        if not message.get("more_body", False):
            first = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            break
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return first
        return await receive()

    return replay


# -- access log ------------------------------------------------------------------------------

#: Query parameters whose values the access log keeps; every other value is redacted (a key
#: sent by mistake as ``?api_key=`` must not land in the log in clear).
LOGGED_QUERY_PARAMS = frozenset({"limit", "cursor"})


def redact_query(path: str) -> str:
    """``path`` with the value of every query parameter not in ``LOGGED_QUERY_PARAMS`` hidden."""
    base, sep, query = path.partition("?")
    if not sep:
        return path
    parts = []
    for part in query.split("&"):
        name, eq, _ = part.partition("=")
        keep = unquote_plus(name) in LOGGED_QUERY_PARAMS
        parts.append(part if keep or not eq else f"{name}=REDACTED")
    return base + "?" + "&".join(parts)


class RedactQueryFilter(logging.Filter):
    """A filter for uvicorn's access logger: its third argument is the path with the query."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact_query(args[2]), *args[3:])
        return True


def install_access_log_filter() -> None:
    """Redact query strings in uvicorn's access log (idempotent)."""
    logger = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactQueryFilter) for f in logger.filters):
        logger.addFilter(RedactQueryFilter())
