"""Regression pin: tiny `client-distiller run`s give exactly the numbers they gave before the
experiment layer was refactored.

The expected values were computed with the code of commit c76ccc0 (before the split of
``evaluate.py`` into the runner and the evaluation). A refactor must not change any training
result: the same initialization, RNG use and order, batch sampling, losses, checkpoint
selection and weight averaging give the same accuracies, and the same settings hash to the
same checkpoint folder (so a rerun reuses what an older version trained). Accuracies and
folder names are compared exactly; the weights' L2 norm with a relative tolerance of 1e-5, so
that float rounding on another CPU does not fail the test while any change in what was
trained does (a different initialization or batch order moves it by far more).

Covered: every algorithm (erm, kd, adip, sd, zeroshot) with two seeds, a fixed view bank with
training-domain validation (run ``a``), online views with SWA (run ``b``), and the demo
student (the shipped photo-pretrained weights) with BatchNorm statistics updated (run ``c``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from client_distiller.cli import main
from tests.helpers.synthetic import write_domainbed

pytestmark = pytest.mark.slow

THIRD = 1 / 3
ALL_THIRD = {"flat": THIRD, "noisy": THIRD, "outline": THIRD}

RUNS = {
    "a": [
        "--algorithms", "erm,kd,adip,sd,zeroshot", "--seeds", "0,1", "--views", "2",
        "--steps", "4", "--align-steps", "3", "--student", "test_resnet",
        "--student-size", "32", "--no-pretrained", "--eval-every", "2",
    ],
    "b": [
        "--algorithms", "kd,adip", "--seeds", "0", "--views", "online", "--steps", "3",
        "--align-steps", "2", "--student", "test_resnet", "--student-size", "32",
        "--no-pretrained", "--swa",
    ],
    "c": [
        "--algorithms", "erm,adip", "--seeds", "0", "--views", "1", "--steps", "2",
        "--align-steps", "2", "--lr", "3e-4", "--train-bn",
    ],
}  # fmt: skip

# run/algorithm/views/seed: (per-domain accuracy, best validation accuracy per stage,
# queries used, online queries, L2 norm of the final weights, checkpoint path below
# OUT/checkpoints)
EXPECTED = {
    "a/adip/K2/s0": (ALL_THIRD, {"align": 0.5, "distill": THIRD}, 63, 0, 59.164854,
                     "flat/adip-K2-s0-f9ddd191e8/distill.pt"),
    "a/adip/K2/s1": (ALL_THIRD, {"align": THIRD, "distill": THIRD}, 63, 0, 59.186439,
                     "flat/adip-K2-s1-f9ddd191e8/distill.pt"),
    "a/erm/K2/s0": ({"flat": 0.2, "noisy": THIRD, "outline": THIRD}, {"train": THIRD}, 0, 0,
                    59.052987, "flat/erm-K2-s0-29c781400c/train.pt"),
    "a/erm/K2/s1": ({"flat": 0.4, "noisy": THIRD, "outline": 0.0}, {"train": 1 / 6}, 0, 0,
                    59.071471, "flat/erm-K2-s1-29c781400c/train.pt"),
    "a/kd/K2/s0": ({"flat": 2 / 15, "noisy": THIRD, "outline": THIRD}, {"train": THIRD}, 63, 0,
                   59.054226, "flat/kd-K2-s0-d3c2a72eca/train.pt"),
    "a/kd/K2/s1": ({"flat": 4 / 15, "noisy": THIRD, "outline": THIRD}, {"train": THIRD}, 63, 0,
                   59.072932, "flat/kd-K2-s1-d3c2a72eca/train.pt"),
    "a/sd/K2/s0": (ALL_THIRD, {"distill": THIRD}, 63, 0, 30.141611,
                   "flat/sd-K2-s0-7ddb0dec1e/distill.pt"),
    "a/sd/K2/s1": (ALL_THIRD, {"distill": THIRD}, 63, 0, 30.141029,
                   "flat/sd-K2-s1-7ddb0dec1e/distill.pt"),
    "a/zeroshot/K2/s0": (ALL_THIRD, {}, 24, 0, None, None),
    "a/zeroshot/K2/s1": (ALL_THIRD, {}, 24, 0, None, None),
    "b/adip/Konline/s0": (ALL_THIRD, {}, 23, 20, 59.166504,
                          "flat/adip-Konline-s0-a6d1fd903c/distill.pt"),
    "b/kd/Konline/s0": ({"flat": 0.2, "noisy": THIRD, "outline": THIRD}, {}, 15, 12, 59.055364,
                        "flat/kd-Konline-s0-0069deeb9d/train.pt"),
    "c/adip/K1/s0": ({"flat": 0.4, "noisy": THIRD, "outline": THIRD}, {}, 33, 0, 166.68525,
                     "flat/adip-K1-s0-e5865a095a/distill.pt"),
    "c/erm/K1/s0": ({"flat": 4 / 15, "noisy": 2 / 3, "outline": THIRD}, {}, 0, 0, 166.857333,
                    "flat/erm-K1-s0-3db01f51c3/train.pt"),
}  # fmt: skip


def _norm(checkpoint: str) -> float:
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    return (
        float(sum(v.double().pow(2).sum() for v in state.values() if v.is_floating_point())) ** 0.5
    )


def test_tiny_runs_reproduce_the_pinned_numbers(tmp_path: Path) -> None:
    data = write_domainbed(tmp_path / "data", per_class=6)
    common = [
        "--data", str(data), "--target-domain", "flat", "--local-teacher", "vl2v-tiny",
        "--cache-dir", str(tmp_path / "cache"), "--no-progress", "--threads", "1",
        "--batch-size", "2",
    ]  # fmt: skip
    got = {}
    for name, extra in RUNS.items():
        out = tmp_path / f"out-{name}"
        assert main(["run", *common, *extra, "--out", str(out)]) == 0
        for line in (out / "results.jsonl").read_text().splitlines():
            r = json.loads(line)
            got[f"{name}/{r['algorithm']}/K{r['views']}/s{r['seed']}"] = r
    assert sorted(got) == sorted(EXPECTED)
    for key, (per_domain, best_val, queries, online, norm, checkpoint) in EXPECTED.items():
        r = got[key]
        assert r["per_domain"] == pytest.approx(per_domain, abs=1e-12), key
        assert r["best_val"] == pytest.approx(best_val, abs=1e-12), key
        assert (r["queries_used"], r["online_queries"]) == (queries, online), key
        if checkpoint is None:
            assert r["checkpoint"] is None, key
            continue
        assert r["checkpoint"].split("/checkpoints/")[1] == checkpoint, key
        assert _norm(r["checkpoint"]) == pytest.approx(norm, rel=1e-5), key
