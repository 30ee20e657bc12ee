"""Hostile and malformed input, one row per case: a clear 4xx in the one JSON error shape and
no charge (budget and ledger read before and after), or, for input that is valid but unusual
(non-ASCII, a text at the length limit), a normal answer charged exactly its item count.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.helpers.vendor_process import VendorProcess
from tests.reliability.conftest import (
    LEVELS,
    VENDOR_KNOBS,
    Level,
    auth,
    ensure_running,
    ledger_db,
    new_key,
    read_only,
    write_figures,
)
from vendor_service.settings import LimitSettings

MAX_ITEMS = VENDOR_KNOBS["max_items_per_request"]
MAX_BYTES = VENDOR_KNOBS["max_request_bytes"]
MAX_TEXT = LimitSettings().max_text_chars  # the documented default: longer texts are refused


def _png(w: int = 16, h: int = 16) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (10, 120, 200)).save(buf, "PNG")
    return buf.getvalue()


def _gif() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 10, 10)).save(buf, "GIF")
    return buf.getvalue()


def _bomb(width: int = 30_000, height: int = 30_000) -> bytes:
    """A ~1 KB PNG whose header declares width x height pixels (900 M for the default)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    idat = zlib.compress(b"\x00" * (width + 1) * 4, 9)  # a few rows; the rest is missing
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


PNG = _png()


@dataclass(frozen=True)
class Case:
    """One request and what must come back."""

    id: str
    path: str
    statuses: tuple[int, ...]  # acceptable statuses (one, except where noted)
    codes: tuple[str, ...] = ()  # acceptable error codes; () = any code
    json: Any = None
    content: bytes | None = None
    content_type: str | None = None
    params: dict[str, str] | None = None
    method: str = "POST"
    headers: dict[str, str] | None = None
    charge: int = 0  # queries a 200 answer must charge
    admin: bool = False  # send the admin token instead of the key


IMG, TXT, USAGE = "/v1/embeddings/images", "/v1/embeddings/texts", "/v1/usage"
CASES = [
    Case("empty image list", IMG, (422,), ("empty_request",), json={"images": []}),
    Case("empty text list", TXT, (422,), ("empty_request",), json={"texts": []}),
    Case(
        "too many items", TXT, (422,), ("too_many_items",), json={"texts": ["x"] * (MAX_ITEMS + 1)}
    ),
    Case("zero-byte image", IMG, (400,), ("invalid_image",), json={"images": [""]}),
    Case("truncated PNG", IMG, (400,), ("invalid_image",), json={"images": [b64(PNG[:40])]}),
    Case(
        "PNG header over garbage",
        IMG,
        (400,),
        ("invalid_image",),
        json={"images": [b64(PNG[:33] + b"\x00garbage" * 64)]},
    ),
    Case(
        "decompression bomb 30000x30000",
        IMG,
        (413,),
        ("image_too_large",),
        json={"images": [b64(_bomb())]},
    ),
    Case(
        "bomb after a good image",
        IMG,
        (413,),
        ("image_too_large",),
        json={"images": [b64(PNG), b64(_bomb(20_000, 20_000))]},
    ),
    Case(
        "non-image file (PDF)",
        IMG,
        (400,),
        ("invalid_image",),
        json={"images": [b64(b"%PDF-1.4\n1 0 obj << >> endobj\n%%EOF\n")]},
    ),
    Case(
        "GIF (not PNG/JPEG)",
        IMG,
        (400,),
        ("unsupported_image", "invalid_image"),
        json={"images": [b64(_gif())]},
    ),
    Case("invalid base64", IMG, (400,), ("invalid_base64",), json={"images": ["!!not*base64$$"]}),
    Case(
        "base64 of a data URL",
        IMG,
        (400,),
        ("invalid_base64",),
        json={"images": ["data:image/png;base64," + b64(PNG)]},
    ),
    Case(
        "body over the size limit",
        TXT,
        (413,),
        ("request_too_large",),
        json={"texts": ["y" * (MAX_BYTES + 10)]},
    ),
    Case(
        "wrong content type text/plain",
        TXT,
        (415, 422),
        (),
        content=b'{"texts": ["a"]}',
        content_type="text/plain",
    ),
    Case(
        "form-encoded body",
        TXT,
        (415, 422),
        (),
        content=b"texts=a",
        content_type="application/x-www-form-urlencoded",
    ),
    Case(
        "malformed JSON",
        TXT,
        (400, 422),
        (),
        content=b'{"texts": ["a"',
        content_type="application/json",
    ),
    Case("JSON array body", TXT, (422,), ("invalid_request",), json=["a"]),
    Case("unknown field", TXT, (422,), ("invalid_request",), json={"texts": ["a"], "x": 1}),
    Case("text that is not a string", TXT, (422,), ("invalid_request",), json={"texts": [1]}),
    Case("over-long text", TXT, (422,), ("text_too_long",), json={"texts": ["z" * (MAX_TEXT + 1)]}),
    Case(
        "NaN normalize",
        TXT,
        (422,),
        ("invalid_request",),
        content=b'{"texts": ["a"], "normalize": NaN}',
        content_type="application/json",
    ),
    Case(
        "bad encoding_format",
        TXT,
        (422,),
        ("invalid_request",),
        json={"texts": ["a"], "encoding_format": "float16"},
    ),
    Case(
        "Idempotency-Key over 200 chars",
        TXT,
        (422,),
        ("invalid_request",),
        json={"texts": ["a"]},
        headers={"Idempotency-Key": "k" * 201},
    ),
    # Valid, unusual input: answered and charged exactly.
    Case(
        "non-ASCII texts",
        TXT,
        (200,),
        json={"texts": ["été", "日本語の文", "🐟🌳", "Ωμέγα\u200b"]},
        charge=4,
    ),
    Case(
        "text at the length limit (tokenizer truncates)",
        TXT,
        (200,),
        json={"texts": ["word " * (MAX_TEXT // 5)]},
        charge=1,
    ),
    # Numbers where numbers are taken: query params and admin bodies.
    *[
        Case(f"usage {p}", USAGE, (422,), ("invalid_request",), method="GET", params={k: v})
        for p, k, v in [
            ("limit=NaN", "limit", "NaN"),
            ("limit=1e400", "limit", "1e400"),
            ("limit=10**30", "limit", "1" + "0" * 30),
            ("limit=0", "limit", "0"),
            ("limit=-1", "limit", "-1"),
            ("cursor=NaN", "cursor", "NaN"),
            ("cursor=-1", "cursor", "-1"),
            ("cursor=10**30", "cursor", "1" + "0" * 30),
            ("cursor=1e5", "cursor", "1e5"),
        ]
    ],
    *[
        Case(
            f"admin create budget={v}",
            "/v1/admin/keys",
            (422,),
            ("invalid_request",),
            admin=True,
            content=f'{{"name": "n", "budget": {v}}}'.encode(),
            content_type="application/json",
        )
        for v in ("NaN", "Infinity", "-Infinity", "1e400", "1" + "0" * 30, "-1", "1.5", '"many"')
    ],
    Case(
        "admin create rate_limit_rps=NaN",
        "/v1/admin/keys",
        (422,),
        ("invalid_request",),
        admin=True,
        content=b'{"name": "n", "budget": 5, "rate_limit_rps": NaN}',
        content_type="application/json",
    ),
    *[
        Case(
            f"admin topup queries={v}",
            "/v1/admin/keys/{key_id}/topup",
            (422,),
            ("invalid_request",),
            admin=True,
            content=f'{{"queries": {v}}}'.encode(),
            content_type="application/json",
        )
        for v in ("NaN", "Infinity", "1e400", "1" + "0" * 30, "0", "-5", "2.5")
    ],
    Case(
        "admin usage limit=NaN",
        "/v1/admin/keys/{key_id}/usage",
        (422,),
        ("invalid_request",),
        method="GET",
        admin=True,
        params={"limit": "NaN"},
    ),
]


@pytest.fixture(scope="module")
def victim(rel_vendor: VendorProcess) -> tuple[str, str]:
    """The key whose budget must not move (clear key, key id)."""
    ensure_running(rel_vendor)
    return new_key(rel_vendor, 1000, "bad-input", rate_limit_rps=1000, rate_limit_burst=1000)


def _state(vendor: VendorProcess, key: str, key_id: str) -> tuple[int, int, int, int]:
    """(used, limit, ledger rows, keys in the store) from the SQLite file, plus /v1/usage."""
    usage = httpx.get(vendor.base_url + USAGE, headers=auth(key), timeout=30).json()
    conn = read_only(ledger_db(vendor))
    try:
        used, limit = conn.execute(
            "SELECT used, budget_limit FROM keys WHERE id = ?", (key_id,)
        ).fetchone()
        rows = conn.execute("SELECT COUNT(*) FROM ledger WHERE key_id = ?", (key_id,)).fetchone()
        n_keys = conn.execute("SELECT COUNT(*) FROM keys").fetchone()[0]
    finally:
        conn.close()
    assert (usage["budget"]["used"], usage["budget"]["limit"]) == (used, limit)
    return used, limit, rows[0], n_keys


RESULTS: dict[str, dict[str, Any]] = {}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
@pytest.mark.parametrize("level", LEVELS)
def test_bad_input_is_refused_without_charge(
    rel_vendor: VendorProcess, victim: tuple[str, str], level: Level, case: Case
) -> None:
    key, key_id = victim
    before = _state(rel_vendor, key, key_id)
    headers = dict(rel_vendor.admin_headers() if case.admin else auth(key))
    headers.update(case.headers or {})
    if case.content_type:
        headers["Content-Type"] = case.content_type
    resp = httpx.request(
        case.method,
        rel_vendor.base_url + case.path.format(key_id=key_id),
        json=case.json,
        content=case.content,
        params=case.params,
        headers=headers,
        timeout=60,
    )
    after = _state(rel_vendor, key, key_id)
    RESULTS[case.id] = {
        "status": resp.status_code,
        "code": resp.json().get("error", {}).get("code") if resp.content else None,
        "charged": after[0] - before[0],
    }

    assert resp.status_code in case.statuses, resp.text[:300]
    assert resp.headers["content-type"].startswith("application/json")
    if resp.status_code == 200:
        body = resp.json()
        assert len(body["data"]) == case.charge == body["usage"]["queries"]
        assert after[0] == before[0] + case.charge and after[2] == before[2] + 1
        return
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "request_id"}
    err = body["error"]
    assert err["code"] and err["message"] and "Traceback" not in err["message"]
    assert err["request_id"] == resp.headers["x-request-id"]
    if case.codes:
        assert err["code"] in case.codes, err
    assert after == before, "a refused request changed the budget, ledger or keys"
    assert resp.headers.get("x-queries-charged", "0") == "0"


@pytest.mark.parametrize("level", LEVELS)
def test_bad_input_summary(level: Level) -> None:
    """Write the table's figures (runs after the cases above, in file order)."""
    if not RESULTS:
        pytest.skip("no bad-input case ran in this session")
    figures = {
        "cases": len(RESULTS),
        "refused_4xx": sum(400 <= r["status"] < 500 for r in RESULTS.values()),
        "answered_200": sum(r["status"] == 200 for r in RESULTS.values()),
        "http_5xx": sum(r["status"] >= 500 for r in RESULTS.values()),
        "charged_by_refusals": sum(r["charged"] for r in RESULTS.values() if r["status"] != 200),
        "table": RESULTS,
    }
    write_figures("bad-input", level, figures)
    assert figures["http_5xx"] == 0 and figures["charged_by_refusals"] == 0


# -- free work before the charge ---------------------------------------------------------------
#
# A key with budget 0 sends input that is expensive to decode, resize or tokenize. It must get
# its 402 before any of that work (the budget is checked against the item count first), and a
# key that can pay must get a 4xx for an image whose size after the model's resize is absurd.
# Time and the server's peak RSS (VmHWM of its one process) are measured per case.


def _strip_png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("1", (width, height), 0).save(buf, "PNG")
    return buf.getvalue()


def _random_texts(n: int, chars: int) -> list[str]:
    import random
    import string

    rng = random.Random(0)
    return ["".join(rng.choice(string.ascii_letters) for _ in range(chars)) for _ in range(n)]


FREE_WORK = [
    # (case, budget, path, body, status, code)
    ("tall thin PNG 1x1,000,000, budget 0", 0, IMG, "STRIP", 402, "budget_exceeded"),
    ("64 random 2000-letter texts, budget 0", 0, TXT, "TEXTS", 402, "budget_exceeded"),
    ("tall thin PNG 1x1,000,000, budget 10", 10, IMG, "STRIP", 413, "image_too_large"),
]


@pytest.fixture(scope="module")
def lone_vendor(tmp_path_factory: pytest.TempPathFactory):
    """A 1-worker vendor: its one process is the server whose RSS is measured."""
    from tests.helpers.vendor_process import start_vendor

    vendor = start_vendor(tmp_path_factory.mktemp("free-work"))
    yield vendor
    vendor.stop()


def _hwm_kb(pid: int) -> int:
    from pathlib import Path

    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


FREE_RESULTS: dict[str, dict[str, Any]] = {}


@pytest.mark.parametrize(
    ("case", "budget", "path", "body", "status", "code"), FREE_WORK, ids=[c[0] for c in FREE_WORK]
)
@pytest.mark.parametrize("level", LEVELS)
def test_no_free_work_before_the_charge(
    lone_vendor: VendorProcess,
    level: Level,
    case: str,
    budget: int,
    path: str,
    body: str,
    status: int,
    code: str,
) -> None:
    import time

    key = lone_vendor.create_key(budget, name="free-work")
    payload = (
        {"images": [b64(_strip_png(1, 1_000_000))]}
        if body == "STRIP"
        else {"texts": _random_texts(64, 2000)}
    )
    assert lone_vendor.proc is not None
    hwm_before = _hwm_kb(lone_vendor.proc.pid)
    started = time.perf_counter()
    resp = httpx.post(lone_vendor.base_url + path, json=payload, headers=auth(key), timeout=600)
    seconds = time.perf_counter() - started
    grown_mb = (_hwm_kb(lone_vendor.proc.pid) - hwm_before) / 1024
    FREE_RESULTS[case] = {
        "status": resp.status_code,
        "seconds": round(seconds, 2),
        "peak_rss_growth_mb": round(grown_mb, 1),
        "wire_bytes": len(json.dumps(payload)),
    }
    assert resp.status_code == status, resp.text[:300]
    assert resp.json()["error"]["code"] == code
    assert seconds < 3.0, f"{case}: {seconds:.1f} s"
    assert grown_mb < 100, f"{case}: peak RSS grew {grown_mb:.0f} MB"
    assert lone_vendor.usage(key)["budget"]["used"] == 0


@pytest.mark.parametrize("level", LEVELS)
def test_free_work_summary(level: Level) -> None:
    """Write the free-work figures (runs after the cases above, in file order)."""
    if not FREE_RESULTS:
        pytest.skip("no free-work case ran in this session")
    write_figures("free-work", level, {"table": dict(FREE_RESULTS)})
