"""Keys and access: 401/403 where they belong, no key sees another's usage, keys stored hashed,
the admin token required to start and never written to the server's logs."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import httpx
import pytest

from tests.helpers.vendor_process import REPO_ROOT, VendorProcess
from tests.reliability.conftest import (
    LEVELS,
    Level,
    all_usage_entries,
    auth,
    ensure_running,
    ledger_db,
    new_key,
    write_figures,
)

pytestmark = pytest.mark.slow
EMBED = "/v1/embeddings/texts"


def _embed(vendor: VendorProcess, headers: dict[str, str], text: str = "a") -> httpx.Response:
    return httpx.post(vendor.base_url + EMBED, json={"texts": [text]}, headers=headers, timeout=30)


def _error_code(resp: httpx.Response) -> str:
    body = resp.json()
    assert body["error"]["request_id"] == resp.headers["x-request-id"]
    return body["error"]["code"]


@pytest.mark.parametrize("level", LEVELS)
def test_keys_and_access(rel_vendor: VendorProcess, level: Level) -> None:
    ensure_running(rel_vendor)
    url = rel_vendor.base_url
    key_a, id_a = new_key(rel_vendor, 50, "access-a")
    key_b, id_b = new_key(rel_vendor, 50, "access-b")
    key_r, id_r = new_key(rel_vendor, 50, "access-revoked")
    assert _embed(rel_vendor, auth(key_a), "from a").status_code == 200
    assert _embed(rel_vendor, auth(key_b), "from b").status_code == 200
    assert _embed(rel_vendor, auth(key_r)).status_code == 200  # works until revoked
    httpx.post(
        f"{url}/v1/admin/keys/{id_r}/revoke", headers=rel_vendor.admin_headers(), timeout=30
    ).raise_for_status()
    checked = 0

    # 401: no key, a wrong key, a malformed header, a revoked key, the admin token as a key.
    for headers in (
        {},
        auth("vk_wrong"),
        auth(key_a + "x"),
        {"Authorization": key_a},
        {"Authorization": f"Basic {key_a}"},
        auth(key_r),
    ):
        for resp in (
            _embed(rel_vendor, headers),
            httpx.get(url + "/v1/usage", headers=headers, timeout=30),
        ):
            assert resp.status_code == 401, (headers, resp.text)
            assert _error_code(resp) in ("unauthorized", "invalid_key")
            checked += 1
    resp = httpx.get(url + "/v1/usage", headers=rel_vendor.admin_headers(), timeout=30)
    assert resp.status_code == 401
    checked += 1

    # 403: a valid key on every admin route; 401 for no key there.
    admin_calls = [
        ("GET", "/v1/admin/keys", None),
        ("POST", "/v1/admin/keys", {"name": "x", "budget": 10**6}),
        ("POST", f"/v1/admin/keys/{id_a}/topup", {"queries": 10**6}),
        ("POST", f"/v1/admin/keys/{id_b}/revoke", None),
        ("DELETE", f"/v1/admin/keys/{id_b}", None),
        ("GET", f"/v1/admin/keys/{id_b}/usage", None),
    ]
    for method, path, body in admin_calls:
        resp = httpx.request(method, url + path, json=body, headers=auth(key_a), timeout=30)
        assert resp.status_code == 403, (method, path, resp.text)
        assert _error_code(resp) == "forbidden"
        resp = httpx.request(method, url + path, json=body, timeout=30)
        assert resp.status_code == 401, (method, path, resp.text)
        checked += 2
    # ...and none of them had an effect.
    first_a, _ = all_usage_entries(rel_vendor, key_a)
    assert first_a["budget"]["limit"] == 50
    assert _embed(rel_vendor, auth(key_b)).status_code == 200  # b was not revoked

    # A key sees only its own usage, whatever it asks for.
    usage_b = {e["request_id"] for e in all_usage_entries(rel_vendor, key_b)[1]}
    for params in ({}, {"key_id": id_b}, {"key": key_b}):
        resp = httpx.get(url + "/v1/usage", params=params, headers=auth(key_a), timeout=30)
        assert resp.status_code in (200, 422)
        if resp.status_code == 200:
            body = resp.json()
            assert body["key_id"] == id_a and body["name"] == "access-a"
            assert not usage_b & {e["request_id"] for e in body["entries"]}
            assert body["budget"]["used"] == 1
    assert len(usage_b) == 2

    # Keys are stored hashed: the clear keys are nowhere in the database files; their sha256
    # is (a positive control that the search itself works).
    db = ledger_db(rel_vendor)
    files = [
        p
        for p in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm"))
        if p.exists()
    ]
    blob = b"".join(p.read_bytes() for p in files)
    for clear in (key_a, key_b, key_r):
        assert clear.encode() not in blob
        assert clear.encode()[10:30] not in blob  # not even a part past the shown prefix
    assert hashlib.sha256(key_a.encode()).hexdigest().encode() in blob

    # The admin token and the clear keys never reach the server's logs.
    log = rel_vendor.log_path.read_text(errors="replace")
    assert "Application startup complete" in log  # the log is the server's real output
    assert rel_vendor.admin_token not in log
    for clear in (key_a, key_b, key_r):
        assert clear not in log
    write_figures(
        "keys",
        level,
        {
            "access_checks": checked,
            "db_files_searched": len(files),
            "db_bytes_searched": len(blob),
            "log_bytes_searched": len(log),
            "clear_keys_found": 0,
            "admin_token_in_log": False,
        },
    )


def test_admin_token_is_required_to_serve(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VENDOR_")}
    for token in (None, ""):
        run_env = dict(env) if token is None else {**env, "VENDOR_ADMIN_TOKEN": token}
        proc = subprocess.run(
            [sys.executable, "-m", "vendor_service.cli", "serve", "--model.name", "vl2v-tiny",
             "--port", "1", "--data-dir", str(tmp_path / "d")],
            cwd=REPO_ROOT, env=run_env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert proc.returncode == 2, proc.stderr
        assert "VENDOR_ADMIN_TOKEN" in proc.stderr and "Traceback" not in proc.stderr
        assert not (tmp_path / "d" / "ledger.sqlite3").exists()  # refused before touching data
