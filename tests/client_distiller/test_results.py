"""The typed run record: one definition, the JSON keys results files have always had."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from client_distiller.results import RunRecord, append_record, load_records, markdown_table

REPO = Path(__file__).resolve().parents[2]
PUBLISHED = REPO / "docs" / "results" / "lodo-demo-results.jsonl"


def test_published_results_load_and_write_back_unchanged(tmp_path: Path) -> None:
    lines = [json.loads(line) for line in PUBLISHED.read_text().splitlines() if line.strip()]
    assert {f.name for f in dataclasses.fields(RunRecord)} == set(lines[0])
    for line in lines:
        assert RunRecord.from_json(line).to_json() == line
    records = load_records(PUBLISHED)
    assert len({r.key for r in records}) == len(records) == len({_key(x) for x in lines})
    out = tmp_path / "results.jsonl"
    for r in records:
        append_record(out, r)
    assert [RunRecord.from_json(json.loads(x)) for x in out.read_text().splitlines()] == records
    table = markdown_table(records, "ood_acc", views="4")
    assert table.splitlines()[0] == "| algorithm | cartoon | painting | photo | sketch | Avg |"
    assert any(row.startswith("| adip |") for row in table.splitlines())


def test_a_rerun_replaces_the_earlier_record_and_unknown_keys_are_ignored(tmp_path) -> None:
    base = {"dataset": "demo", "target": "sketch", "algorithm": "erm", "seed": 0, "views": 4}
    first = RunRecord(**base, id_acc=0.5, ood_acc=0.4, per_domain={"sketch": 0.4})
    path = tmp_path / "results.jsonl"
    append_record(path, first)
    newer = {**first.to_json(), "ood_acc": 0.6, "a_key_from_a_newer_version": 1}
    path.write_text(path.read_text() + json.dumps(newer) + "\n")
    (only,) = load_records(path)
    assert only.ood_acc == 0.6 and only.key == ("demo", "sketch", "erm", 0, "4")


def _key(line: dict) -> tuple:
    return (line["dataset"], line["target"], line["algorithm"], line["seed"], str(line["views"]))
