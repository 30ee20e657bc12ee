"""Pure-ASGI middleware: request ids, body-size limit, metrics, and no stack traces out."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vendor_service.errors import error_response
from vendor_service.metrics import Metrics

log = logging.getLogger("vendor_service")


class VendorMiddleware:
    """Outermost layer of the app.

    Reads the whole body first (bounded by ``max_request_bytes``, by Content-Length and by
    counting streamed bytes) so an oversized body is refused with 413 before any route runs.
    Every response gets ``X-Request-Id``; an unhandled exception becomes a JSON 500.
    """

    def __init__(self, app: ASGIApp, *, max_request_bytes: int, metrics: Metrics) -> None:
        self.app = app
        self.max_request_bytes = max_request_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = "req_" + uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status_holder: dict[str, Any] = {"status": 500, "started": False}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                status_holder["started"] = True
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            body_receive = await self._bounded_body(scope, receive)
            if body_receive is None:
                resp = error_response(
                    413,
                    "request_too_large",
                    f"request body exceeds {self.max_request_bytes} bytes",
                    request_id,
                )
                await resp(scope, receive, send_with_id)
            else:
                await self.app(scope, body_receive, send_with_id)
        except Exception:
            log.exception("unhandled error in request %s", request_id)
            if not status_holder["started"]:
                resp = error_response(500, "internal_error", "internal server error", request_id)
                await resp(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(
                path, scope.get("method", ""), str(status_holder["status"])
            ).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - started)

    async def _bounded_body(self, scope: Scope, receive: Receive) -> Receive | None:
        """A receive that replays the already-read body, or None when it is too large."""
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    if int(value) > self.max_request_bytes:
                        return None
                except ValueError:
                    return None
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                chunks_msg: Message = message
                break
            body = message.get("body", b"")
            total += len(body)
            if total > self.max_request_bytes:
                return None
            chunks.append(body)
            if not message.get("more_body", False):
                chunks_msg = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return chunks_msg
            return await receive()

        return replay
