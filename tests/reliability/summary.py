"""Print the README's reliability table from ``runs/reliability/*-<level>.json``.

.venv/bin/python -m tests.reliability.summary            # the full run's figures
.venv/bin/python -m tests.reliability.summary --level reduced
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from tests.helpers.vendor_process import REPO_ROOT

FIGURES_DIR = REPO_ROOT / "runs" / "reliability"
HEADERS = ["scenario", "requests", "kills", "charged", "served", "5xx", "result"]


def _row(scenario: str, f: dict, level: dict) -> list[str]:
    """One table row: requests, kills, charged queries, served queries, 5xx, notes."""
    load = (
        f"{level['threads']} threads, {level['keys']} keys of {level['budget']} queries, "
        "idempotent retries"
    )
    if scenario == "load":
        return [
            f"load: {load}",
            f["answered_requests"],
            0,
            f["charged_queries"],
            f["served_queries"],
            f["http_5xx"],
            (
                f"charged == served on every key; {f['status_counts'].get('402', 0)} x 402, "
                f"{f['status_counts'].get('429', 0)} x 429 charged nothing; "
                f"{f['replays']} replays free; /v1/usage == ledger row by row"
            ),
        ]
    if scenario == "crash":
        delivered = f["served_queries"] + sum(
            k.get("delivered_by_retry_replay", 0) for k in f["per_key"].values()
        )
        return [
            f"crash: {load} + one 10-query key, vendor SIGKILLed + restarted",
            f["answered_requests"],
            f["kills"],
            f["charged_queries"],
            delivered,
            f["http_5xx"],
            (
                f"{f['status_counts'].get('none', 0)} attempts cut or refused while down; "
                f"{f['status_counts'].get('402', 0)} x 402 charged nothing; "
                f"{f['refunded_rows']} in-flight charges refunded at restart; "
                f"{f.get('answers_lost_to_kill_then_replayed_on_retry', 0)} lost answers "
                f"replayed to the retry, {f['lost_answers_replayed']} replayed at the end; "
                f"no key paid twice; integrity_check {f['integrity_check']}"
            ),
        ]
    if scenario == "client-fetch-kill":
        return [
            "client: `client-distiller fetch` SIGKILLed, rerun",
            f["requests"],
            f["kills"],
            f["charged"],
            f["cached"],
            0,
            (
                f"{f['items']} distinct items, vendor charged {f['charged']}; "
                "charged/cached at each kill: "
                + ", ".join(f"{k['charged']}/{k['cached']}" for k in f["at_kills"])
            ),
        ]
    if scenario == "client-train-kill":
        return [
            "client: `client-distiller run` SIGKILLed, rerun",
            "-",
            f["kills"],
            f["charged_after"],
            "-",
            0,
            (
                f"checkpoints at kills: steps {f['resume_steps']}; rerun resumed distill at "
                f"step {f['resumed_from'].get('distill')}; queries before/after "
                f"{f['charged_before']}/{f['charged_after']}"
            ),
        ]
    if scenario == "fuzz":
        return [
            "fuzz: schemathesis `st run`, API key + admin token",
            f["requests_counted_by_server"],
            0,
            "-",
            "-",
            f["http_5xx"],
            (
                f"{f['schemathesis_test_cases']} test cases over {f['operations_tested']} "
                f"operations; {f['failures']} failures, {f['errors']} errors "
                f"(excluded checks: {f['excluded_checks']})"
            ),
        ]
    if scenario == "bad-input":
        return [
            "hostile input table",
            f["cases"],
            0,
            0,
            f["answered_200"],
            f["http_5xx"],
            (
                f"{f['refused_4xx']} refused with 4xx + error JSON, charged "
                f"{f['charged_by_refusals']}; non-ASCII and limit-length texts answered"
            ),
        ]
    if scenario == "keys":
        return [
            "keys and access",
            f["access_checks"],
            0,
            "-",
            "-",
            0,
            (
                f"401/403 as specified; clear keys in {f['db_files_searched']} DB files: "
                f"{f['clear_keys_found']}; admin token in server log: "
                f"{f['admin_token_in_log']}"
            ),
        ]
    return [scenario, "-", "-", "-", "-", "-", json.dumps(f)[:80]]


ORDER = ["load", "crash", "client-fetch-kill", "client-train-kill", "fuzz", "bad-input", "keys"]


def main(argv: Sequence[str] | None = None) -> int:
    """Print the markdown table; 1 if no figures were found."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--level", default="full", choices=["full", "reduced"])
    args = parser.parse_args(argv)
    records = {}
    for path in sorted(FIGURES_DIR.glob(f"*-{args.level}.json")):
        record = json.loads(path.read_text())
        records[record["scenario"]] = record
    if not records:
        print(f"no figures in {FIGURES_DIR} for level {args.level}", file=sys.stderr)
        return 1
    print("| " + " | ".join(HEADERS) + " |")
    print("|" + "---|" * len(HEADERS))
    for scenario in sorted(records, key=lambda s: ORDER.index(s) if s in ORDER else 99):
        row = _row(scenario, records[scenario]["figures"], records[scenario]["level"])
        print("| " + " | ".join(str(c) for c in row) + " |")
    stamps = sorted(r["written_at"] for r in records.values())
    print(f"\nfigures written {stamps[0]} .. {stamps[-1]} ({args.level} level)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
