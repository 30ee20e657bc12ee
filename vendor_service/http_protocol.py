"""uvicorn's httptools protocol with the limits it lacks: slow, idle and oversized clients.

uvicorn closes a kept-alive connection after ``timeout_keep_alive``, but on its own it lets a
new connection that never sends a byte stay open, lets a client trickle its headers or its
body forever, accepts headers of any size (httptools has no limit) and answers a request it
cannot parse with a ``text/plain`` 400. :class:`VendorHttpProtocol` adds, per connection:

- an idle timeout from the moment the connection is accepted (uvicorn's keep-alive timer covers
  only the time after a response);
- a deadline for the request line and headers (``http.header_timeout_s``, 408), and a cap on
  their size (``http.max_header_bytes``, 431);
- a deadline for the body once the headers are in (``http.body_timeout_s``, 408);
- the JSON error shape (``{"error": {"code", "message", "request_id"}}``) for every answer the
  protocol writes itself, so clients see one error format.

The timers are armed only while a request is really incomplete at the end of a read, so a
request that arrives in one packet costs no timer. The limits come from the settings the
worker was started with (``VendorSettings.from_env``), read once per process.
"""

from __future__ import annotations

import asyncio
import functools
import json
import uuid
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from vendor_service.settings import HttpSettings, VendorSettings


@functools.lru_cache(maxsize=1)
def _limits() -> HttpSettings:
    return VendorSettings.from_env().http


def error_bytes(status: int, code: str, message: str) -> bytes:
    """A complete HTTP/1.1 error response in the one error shape, closing the connection."""
    request_id = "req_" + uuid.uuid4().hex
    body = json.dumps(
        {"error": {"code": code, "message": message, "request_id": request_id}}
    ).encode()
    head = (
        b"content-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n"
        b"x-request-id: " + request_id.encode() + b"\r\n"
        b"connection: close\r\n\r\n"
    )
    return STATUS_LINE[status] + head + body


class VendorHttpProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` plus connection deadlines and header limits (module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limits = _limits()
        self._header_timeout = limits.header_timeout_s
        self._body_timeout = limits.body_timeout_s
        self._idle_timeout = limits.idle_timeout_s
        self._max_header_bytes = limits.max_header_bytes
        self._in_headers = False  # a request line has begun, its headers are not complete
        self._in_body = False  # headers complete, body not complete
        self._header_bytes = 0
        self._headers_too_large = False
        self._deadline: asyncio.TimerHandle | None = None

    # -- timers ------------------------------------------------------------------------------

    def _clear_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _arm(self, seconds: float, status: int, code: str, message: str) -> None:
        self._clear_deadline()
        self._deadline = self.loop.call_later(seconds, self._expire, status, code, message)

    def _expire(self, status: int, code: str, message: str) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or not cycle.response_started:
            self.transport.write(error_bytes(status, code, message))
        if cycle is not None and not cycle.response_complete:
            # The app may still be waiting for this body: it gets ``http.disconnect``, and its
            # later sends are dropped (nothing is written after the error above).
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()

    # -- protocol interface ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # A connection that never sends a request is closed like a kept-alive idle one.
        self.timeout_keep_alive_task = self.loop.call_later(
            self._idle_timeout, self.timeout_keep_alive_handler
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._clear_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_headers:
            # Upper bound of the header bytes in this read (httptools buffers a partial header
            # itself, so the callbacks alone would see a 16 MB header only once it is whole).
            self._header_bytes += len(data)
        super().data_received(data)
        if self.transport.is_closing():
            return
        if self._in_headers and self._header_bytes > self._max_header_bytes:
            self._too_large()
            return
        if self._in_headers:
            if self._deadline is None:
                self._arm(
                    self._header_timeout,
                    408,
                    "request_timeout",
                    f"request headers not received within {self._header_timeout:g} s",
                )
        elif self._in_body:
            if self._deadline is None:
                self._arm(
                    self._body_timeout,
                    408,
                    "request_timeout",
                    f"request body not received within {self._body_timeout:g} s",
                )
        else:
            self._clear_deadline()

    def _too_large(self) -> None:
        self._clear_deadline()
        self.transport.write(
            error_bytes(
                431,
                "headers_too_large",
                f"request line and headers exceed {self._max_header_bytes} bytes",
            )
        )
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        if self._headers_too_large:
            self._too_large()
            return
        self._clear_deadline()
        self.transport.write(error_bytes(400, "bad_request", msg))
        self.transport.close()

    # -- parser callbacks ----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True
        self._in_body = False
        self._header_bytes = 0

    def _count(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > self._max_header_bytes:
            self._headers_too_large = True
            # httptools turns a callback's exception into HttpParserCallbackError, which
            # data_received answers through send_400_response (431 there, by the flag).
            raise httptools.HttpParserError("headers too large")

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._in_body = True
        self._clear_deadline()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_body = False
        self._clear_deadline()
        super().on_message_complete()
