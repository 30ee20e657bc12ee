"""Slow, idle, oversized and unauthenticated clients against a real server, with raw sockets.

One real ``vendor-service serve`` (1 worker, vl2v-tiny) with short connection deadlines
(``--http.*``), so each case takes seconds. Every case checks what the socket sees: when the
server closes it, and the first bytes of its answer.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.vendor_process import VendorProcess, start_vendor
from tests.reliability.conftest import LEVELS, Level, write_figures

pytestmark = pytest.mark.slow

HEADER_TIMEOUT, BODY_TIMEOUT, IDLE_TIMEOUT = 1.0, 2.0, 1.0
MAX_HEADER_BYTES = 8192
#: Scheduling slack on a loaded 2-core machine (a deadline fires within this of its time).
SLACK = 2.5

FIGURES: dict[str, object] = {}


@pytest.fixture(scope="module")
def vendor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VendorProcess]:
    v = start_vendor(
        tmp_path_factory.mktemp("slow-clients"),
        header_timeout_s=HEADER_TIMEOUT,
        body_timeout_s=BODY_TIMEOUT,
        idle_timeout_s=IDLE_TIMEOUT,
        max_header_bytes=MAX_HEADER_BYTES,
        access_log=True,
    )
    yield v
    v.stop()


@pytest.fixture(scope="module")
def key(vendor: VendorProcess) -> str:
    return vendor.create_key(10_000, name="slow-clients")


def _connect(vendor: VendorProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", vendor.port), timeout=10)


def _read_until_closed(sock: socket.socket, limit_s: float) -> tuple[bool, bytes, float]:
    """(closed by the server within ``limit_s``, bytes read, seconds until closed)."""
    started = time.monotonic()
    data = b""
    while True:
        left = limit_s - (time.monotonic() - started)
        if left <= 0:
            return False, data, time.monotonic() - started
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return False, data, time.monotonic() - started
        except ConnectionResetError:
            return True, data, time.monotonic() - started
        if not chunk:
            return True, data, time.monotonic() - started
        data += chunk


def _status_and_json(data: bytes) -> tuple[int, dict[str, str], dict]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return int(lines[0].split()[1]), headers, json.loads(body) if body else {}


def _assert_error_shape(data: bytes, status: int, code: str) -> None:
    got, headers, body = _status_and_json(data)
    assert got == status, data[:300]
    assert headers["content-type"].startswith("application/json")
    assert body["error"]["code"] == code and body["error"]["request_id"] == headers["x-request-id"]


def test_trickled_headers_are_cut_off(vendor: VendorProcess) -> None:
    sock = _connect(vendor)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    stop = threading.Event()

    def trickle() -> None:  # one header byte every 0.2 s, forever
        for byte in b"X-Slow: " + b"a" * 10_000:
            if stop.wait(0.2):
                return
            try:
                sock.send(bytes([byte]))
            except OSError:
                return

    threading.Thread(target=trickle, daemon=True).start()
    try:
        closed, data, after = _read_until_closed(sock, HEADER_TIMEOUT + 3 * SLACK)
    finally:
        stop.set()
        sock.close()
    FIGURES["trickled_headers_closed_after_s"] = round(after, 2)
    assert closed, f"still open after {after:.1f} s"
    assert after <= HEADER_TIMEOUT + SLACK
    _assert_error_shape(data, 408, "request_timeout")


@pytest.mark.parametrize("level", LEVELS)
def test_idle_connections_are_closed(vendor: VendorProcess, level: Level) -> None:
    count = 100 if level.name == "reduced" else 500
    socks = [_connect(vendor) for _ in range(count)]
    # one that made a request and then idles (uvicorn's own keep-alive timer)
    kept = _connect(vendor)
    kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    socks.append(kept)
    deadline = time.monotonic() + IDLE_TIMEOUT + 3 * SLACK
    closed = 0
    try:
        for sock in socks:
            ok, _, _ = _read_until_closed(sock, max(0.1, deadline - time.monotonic()))
            closed += ok
    finally:
        for sock in socks:
            sock.close()
    FIGURES[f"idle_connections_closed_{level.name}"] = f"{closed}/{len(socks)}"
    assert closed == len(socks)


def test_oversized_headers_are_refused_with_431(vendor: VendorProcess) -> None:
    sock = _connect(vendor)
    big = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (16 * 1024 * 1024) + b"\r\n\r\n"
    started = time.monotonic()

    def send() -> None:
        # the server closes the connection early: an OSError here is what we want
        with contextlib.suppress(OSError):
            sock.sendall(big)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        closed, data, _ = _read_until_closed(sock, 30)
    finally:
        sock.close()
    FIGURES["16mb_header"] = data.split(b"\r\n", 1)[0].decode("latin-1")
    assert closed and time.monotonic() - started < 30
    _assert_error_shape(data, 431, "headers_too_large")
    # many small headers over the cap are refused too
    sock = _connect(vendor)
    many = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 100) for i in range(200))
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
    closed, data, _ = _read_until_closed(sock, 10)
    sock.close()
    _assert_error_shape(data, 431, "headers_too_large")


def test_a_body_that_never_finishes_is_cut_off(vendor: VendorProcess, key: str) -> None:
    sock = _connect(vendor)
    body = b'{"texts": ["' + b"a" * 2000 + b'"]}'
    sock.sendall(
        b"POST /v1/embeddings/texts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body[:20]
    )
    stop = threading.Event()

    def trickle() -> None:
        for byte in body[20:]:
            if stop.wait(0.2):
                return
            try:
                sock.send(bytes([byte]))
            except OSError:
                return

    threading.Thread(target=trickle, daemon=True).start()
    try:
        closed, data, after = _read_until_closed(sock, BODY_TIMEOUT + 3 * SLACK)
    finally:
        stop.set()
        sock.close()
    FIGURES["trickled_body_closed_after_s"] = round(after, 2)
    assert closed, f"still open after {after:.1f} s"
    assert after <= BODY_TIMEOUT + SLACK
    _assert_error_shape(data, 408, "request_timeout")


@pytest.mark.parametrize(
    "raw",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost x\r\n\r\n",  # a header without a colon
        b"POST /v1/usage HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
    ],
)
def test_the_parsers_own_400s_use_the_json_error_shape(vendor: VendorProcess, raw: bytes) -> None:
    sock = _connect(vendor)
    sock.sendall(raw)
    closed, data, _ = _read_until_closed(sock, 10)
    sock.close()
    assert closed
    _assert_error_shape(data, 400, "bad_request")


def _upload_head(key: str, length: int, expect: bool) -> bytes:
    return (
        b"POST /v1/embeddings/texts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {key}\r\nContent-Length: {length}\r\n".encode()
        + (b"Expect: 100-continue\r\n" if expect else b"")
        + b"\r\n"
    )


def test_100_continue_is_sent_only_to_authenticated_requests(
    vendor: VendorProcess, key: str
) -> None:
    body = b'{"texts": ["a red boat"]}'
    sock = _connect(vendor)
    sock.sendall(_upload_head("vk_wrong", 1_000_000, expect=True))
    closed, data, after = _read_until_closed(sock, 10)
    sock.close()
    assert data.startswith(b"HTTP/1.1 401"), data[:200]  # no "100 Continue" first
    assert closed and after < 5  # answered without waiting for the body, and closed
    _assert_error_shape(data, 401, "invalid_key")

    sock = _connect(vendor)
    sock.sendall(_upload_head(key, len(body), expect=True))
    sock.settimeout(10)
    first = sock.recv(4096)
    assert first.startswith(b"HTTP/1.1 100 Continue"), first[:200]
    sock.sendall(body)
    data = first.split(b"\r\n\r\n", 1)[1]
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(
        next(
            ln.split(b":")[1]
            for ln in head.split(b"\r\n")
            if ln.lower().startswith(b"content-length")
        )
    )
    while len(rest) < length:
        rest += sock.recv(65536)
    sock.close()
    assert head.startswith(b"HTTP/1.1 200") and len(json.loads(rest)["data"]) == 1


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.parametrize("level", LEVELS)
def test_stalled_unauthenticated_uploads_hold_no_memory(
    vendor: VendorProcess, level: Level
) -> None:
    count, sent_mb = (100, 2) if level.name == "reduced" else (200, 4)
    assert vendor.proc is not None
    rss_before = _rss_kb(vendor.proc.pid)
    socks = [_connect(vendor) for _ in range(count)]
    chunk = b"x" * (1024 * 1024)

    def upload(sock: socket.socket) -> None:
        try:
            sock.sendall(_upload_head("vk_wrong", 8 * 1024 * 1024, expect=False))
            for _ in range(sent_mb):
                sock.sendall(chunk)
        except OSError:  # refused and closed by the server
            pass  # then stalls: never sends the rest

    for sock in socks:
        sock.settimeout(5)
    threads = [threading.Thread(target=upload, args=(s,), daemon=True) for s in socks]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    rss_peak = _rss_kb(vendor.proc.pid)
    answers = []
    deadline = time.monotonic() + 10  # the answers are due at once: one bound for them all
    for sock in socks:
        _, data, _ = _read_until_closed(sock, max(0.05, deadline - time.monotonic()))
        answers.append(data.split(b"\r\n", 1)[0])
        sock.close()
    grown_mb = (rss_peak - rss_before) / 1024
    FIGURES[f"stalled_uploads_{level.name}"] = {
        "connections": count,
        "mb_sent_each": sent_mb,
        "rss_growth_mb": round(grown_mb, 1),
        "answered_401_or_429": sum(
            a.startswith((b"HTTP/1.1 401", b"HTTP/1.1 429")) for a in answers
        ),
    }
    # refused before a byte was read: 401 for each until the address is throttled, then 429
    assert all(a.startswith((b"HTTP/1.1 401", b"HTTP/1.1 429")) for a in answers), answers[:3]
    assert grown_mb < 50, f"server RSS grew by {grown_mb:.0f} MB"


def test_the_access_log_redacts_query_strings(vendor: VendorProcess, key: str) -> None:
    import httpx

    secret = key  # a key sent by mistake in the query string
    r = httpx.get(vendor.base_url + f"/v1/usage?api_key={secret}&limit=3", timeout=30)
    assert r.status_code == 401
    r = httpx.get(vendor.base_url + "/v1/usage?limit=3", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        log = vendor.log_path.read_text(errors="replace")
        if "/v1/usage?api_key=" in log:
            break
        time.sleep(0.2)
    assert "/v1/usage?api_key=REDACTED&limit=3" in log
    assert secret not in log
    assert "/v1/usage?limit=3" in log  # the API's own parameters stay readable


@pytest.mark.parametrize("level", LEVELS)
def test_slow_clients_summary(level: Level) -> None:
    """Write the figures of the cases above (runs after them, in file order)."""
    if not FIGURES:
        pytest.skip("no slow-client case ran in this session")
    write_figures("slow-clients", level, dict(FIGURES))
