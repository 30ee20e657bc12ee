"""A lean closed-loop HTTP/1.1 load generator (asyncio streams, keep-alive connections).

``C`` clients each keep one connection and send one request at a time, back to back, for a
fixed duration. Request bodies are built once up front. The generator shares the machine's two
cores with the server it measures, so it avoids httpx/pydantic on the hot path: per request it
only writes prebuilt bytes, reads the status line and headers, and reads the body by
Content-Length. The first response of each run is parsed and checked.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from dataclasses import dataclass, field

from _common import percentile


@dataclass
class LoadResult:
    """What one load run saw (latencies in ms, only requests completed inside the window)."""

    concurrency: int
    seconds: float
    ok: int
    errors: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    items_per_request: int = 1
    total_ok: int = 0  # every 200, warm-up included (for CPU per request)

    @property
    def throughput(self) -> float:
        """Items per second (images/s for image requests)."""
        return self.ok * self.items_per_request / self.seconds if self.seconds else 0.0

    def summary(self) -> dict:
        return {
            "concurrency": self.concurrency,
            "seconds": round(self.seconds, 2),
            "requests_ok": self.ok,
            "errors": self.errors,
            "throughput_items_s": round(self.throughput, 1),
            "p50_ms": round(percentile(self.latencies_ms, 50), 2),
            "p90_ms": round(percentile(self.latencies_ms, 90), 2),
            "p99_ms": round(percentile(self.latencies_ms, 99), 2),
        }


def image_request_bodies(pngs: list[bytes], per_request: int = 1) -> list[bytes]:
    """JSON bodies of ``POST /v1/embeddings/images``, ``per_request`` images each, cycling."""
    bodies = []
    for i in range(0, len(pngs), per_request):
        chunk = pngs[i : i + per_request]
        if len(chunk) < per_request:
            break
        bodies.append(
            json.dumps(
                {
                    "images": [base64.b64encode(p).decode("ascii") for p in chunk],
                    "normalize": True,
                    "encoding_format": "base64",
                }
            ).encode()
        )
    return bodies


def _request_bytes(host: str, port: int, path: str, key: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        lname = name.strip().lower()
        if lname == b"content-length":
            length = int(value.strip())
        elif lname == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:  # not used by the vendor's JSON responses, but be correct anyway
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            body += await reader.readexactly(size + 2)
            if size == 0:
                return status, body
    return status, await reader.readexactly(length)


async def _client(
    host: str,
    port: int,
    requests: list[bytes],
    offset: int,
    t_start: float,
    t_end: float,
    result: LoadResult,
    check_first: bool,
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    i = offset
    try:
        while True:
            now = time.perf_counter()
            if now >= t_end:
                return
            t0 = now
            writer.write(requests[i % len(requests)])
            i += 1
            status, body = await _read_response(reader)
            t1 = time.perf_counter()
            if status != 200:
                result.errors[str(status)] = result.errors.get(str(status), 0) + 1
                if status not in (429, 503):
                    raise RuntimeError(f"HTTP {status}: {body[:300]!r}")
                continue
            result.total_ok += 1
            if check_first:
                parsed = json.loads(body)
                if len(parsed["data"]) != result.items_per_request:
                    raise RuntimeError(f"unexpected response: {body[:300]!r}")
                check_first = False
            if t0 >= t_start and t1 <= t_end:  # only requests wholly inside the window
                result.ok += 1
                result.latencies_ms.append((t1 - t0) * 1000)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _run(
    base_url: str,
    key: str,
    bodies: list[bytes],
    concurrency: int,
    seconds: float,
    warmup: float,
    items_per_request: int,
    path: str,
) -> LoadResult:
    host_port = base_url.split("://", 1)[1]
    host, port_s = host_port.rsplit(":", 1)
    port = int(port_s)
    requests = [_request_bytes(host, port, path, key, b) for b in bodies]
    result = LoadResult(concurrency, seconds, 0, items_per_request=items_per_request)
    t_start = time.perf_counter() + warmup
    t_end = t_start + seconds
    await asyncio.gather(
        *(
            _client(host, port, requests, c * 7, t_start, t_end, result, check_first=(c == 0))
            for c in range(concurrency)
        )
    )
    return result


def run_load(
    base_url: str,
    key: str,
    bodies: list[bytes],
    *,
    concurrency: int,
    seconds: float,
    warmup: float = 1.0,
    items_per_request: int = 1,
    path: str = "/v1/embeddings/images",
) -> LoadResult:
    """Closed-loop load: ``concurrency`` clients for ``warmup + seconds``; counts the window.

    Args:
        base_url: ``http://127.0.0.1:PORT``.
        key: API key (Bearer).
        bodies: request bodies, cycled.
        concurrency: clients (one keep-alive connection each, one request in flight each).
        seconds: measured window.
        warmup: seconds of load before the window opens (batcher, caches, connections).
        items_per_request: items in each body (for images/s).
        path: endpoint path.
    """
    return asyncio.run(
        _run(base_url, key, bodies, concurrency, seconds, warmup, items_per_request, path)
    )
