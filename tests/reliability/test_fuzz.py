"""Schemathesis (the ``st`` CLI, a real peer tool) against the live vendor's /openapi.json.

Two runs: every non-admin operation with a valid API key, every admin operation with the admin
token. All of schemathesis's checks run except two whose premise this API does not share, on
purpose:

- ``positive_data_acceptance``: a schema-valid body is not always a valid request here; an image
  must be decodable PNG/JPEG and the item limit is a server setting. Those refusals are 4xx by
  design (and ``test_bad_input`` checks each of them).
- ``use_after_free``: ``DELETE /v1/admin/keys/{id}`` revokes a key; its usage stays readable to
  the admin on purpose (the ledger refers to it), so a later GET answering 200 is correct.

Requests and 5xx are also counted by the server itself (``/metrics``), not only by schemathesis.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.helpers.vendor_process import VendorProcess
from tests.reliability.conftest import LEVELS, Level, ensure_running, new_key, write_figures

pytestmark = pytest.mark.slow
EXCLUDED_CHECKS = "positive_data_acceptance,use_after_free"
# Greedy labels: route templates such as /v1/admin/keys/{key_id}/topup contain braces.
_SAMPLE = re.compile(r"^vendor_requests_total\{(?P<labels>.*)\}\s+(?P<value>\S+)$")


def _server_counts(vendor: VendorProcess) -> tuple[int, int]:
    """(requests, 5xx answers) the vendor has counted since it started."""
    text = httpx.get(vendor.base_url + "/metrics", timeout=30).text
    total = errors = 0
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m:
            n = int(float(m["value"]))
            total += n
            errors += n if re.search(r'status="5\d\d"', m["labels"]) else 0
    assert total > 0, "no request counter in /metrics"
    return total, errors


def _st(
    vendor: VendorProcess, token: str, scope: list[str], examples: int, report: Path, seed: int
) -> tuple[int, dict, str]:
    st = Path(sys.executable).with_name("st")
    cmd = [
        str(st),
        "run",
        vendor.base_url + "/openapi.json",
        "-H",
        f"Authorization: Bearer {token}",
        *scope,
        "--max-examples",
        str(examples),
        "--exclude-checks",
        EXCLUDED_CHECKS,
        "--workers",
        "1",
        "--seed",
        str(seed),
        "--generation-database",
        "none",
        "--continue-on-failure",
        "--no-color",
        "--request-timeout",
        "60",
        "--report",
        "json",
        "--report-json-path",
        str(report),
    ]
    # cwd: st keeps a crash cache in ./.schemathesis; keep it out of the work tree.
    proc = subprocess.run(
        cmd, cwd=report.parent, capture_output=True, text=True, timeout=1500, check=False
    )
    output = proc.stdout + proc.stderr
    assert report.is_file(), output[-4000:]
    return proc.returncode, json.loads(report.read_text()), output


@pytest.mark.parametrize("level", LEVELS)
def test_schemathesis_finds_no_5xx_and_no_schema_violation(
    rel_vendor: VendorProcess, level: Level, tmp_path: Path
) -> None:
    ensure_running(rel_vendor)
    # A key with room to spend and no throttling, so generated bodies reach the model.
    key, _ = new_key(
        rel_vendor, 10**9, f"fuzz-{level.name}", rate_limit_rps=1e6, rate_limit_burst=10**6
    )
    before = _server_counts(rel_vendor)
    runs = {
        "api-key": _st(
            rel_vendor,
            key,
            ["--exclude-path-regex", "^/v1/admin"],
            level.fuzz_examples,
            tmp_path / "key.json",
            seed=1,
        ),
        "admin": _st(
            rel_vendor,
            rel_vendor.admin_token,
            ["--include-path-regex", "^/v1/admin"],
            level.fuzz_examples,
            tmp_path / "admin.json",
            seed=2,
        ),
    }
    after = _server_counts(rel_vendor)

    generated = sum(r["test_cases"]["generated"] for _, r, _ in runs.values())
    figures = {
        "schemathesis_test_cases": generated,
        "requests_counted_by_server": after[0] - before[0],
        "http_5xx": after[1] - before[1],
        "operations_tested": sum(r["operations"]["tested"] for _, r, _ in runs.values()),
        "failures": sum(len(r["failures"]) for _, r, _ in runs.values()),
        "errors": sum(len(r["errors"]) for _, r, _ in runs.values()),
        "excluded_checks": EXCLUDED_CHECKS,
        "per_run": {
            name: {
                "exit_code": rc,
                "test_cases": r["test_cases"],
                "operations": r["operations"],
                "seconds": round(r["running_time"], 1),
            }
            for name, (rc, r, _) in runs.items()
        },
    }
    write_figures("fuzz", level, figures)
    for name, (rc, report, output) in runs.items():
        assert report["failures"] == [] and report["errors"] == [], f"{name}:\n{output[-6000:]}"
        assert rc == 0, f"{name}:\n{output[-6000:]}"
        assert report["operations"]["errored"] == 0
    assert figures["operations_tested"] == len(_operations(rel_vendor))  # every endpoint
    assert figures["http_5xx"] == 0
    assert generated >= level.fuzz_min_requests
    assert figures["requests_counted_by_server"] >= level.fuzz_min_requests


def _operations(vendor: VendorProcess) -> list[tuple[str, str]]:
    spec = httpx.get(vendor.base_url + "/openapi.json", timeout=30).json()
    return [(m, p) for p, item in spec["paths"].items() for m in item]
