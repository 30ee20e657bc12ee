"""Each run's seed drives its training, not only its initialization.

Regression test: every seed once sampled batches with seed 0, so VL2V-SD (whose student is a
copy of the teacher's tower, with nothing random to initialize) trained bit-identically across
seeds and the "mean ± SE over seeds" of its row was an illusion.
"""

from __future__ import annotations

import json

import torch

from client_distiller.cli import main
from tests.helpers.synthetic import write_domainbed


def test_seeds_give_different_sd_students(tmp_path):
    data = write_domainbed(tmp_path / "data", per_class=4)
    out = tmp_path / "out"
    args = [
        "run",
        "--data",
        str(data),
        "--target-domain",
        "flat",
        "--local-teacher",
        "vl2v-tiny",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--algorithms",
        "sd",
        "--seeds",
        "0,1",
        "--views",
        "2",
        "--steps",
        "3",
        "--batch-size",
        "2",
        "--out",
        str(out),
        "--no-progress",
        "--threads",
        "1",
    ]
    assert main(args) == 0
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [(r["seed"], r["loop"]["seed"]) for r in records] == [(0, 0), (1, 1)]
    weights = [
        torch.load(r["checkpoint"], map_location="cpu", weights_only=True)["state_dict"]
        for r in records
    ]
    assert any(not torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
