"""Parity on the demo benchmark: for erm, kd and adip students of the demo student architecture
(``mobilenetv3_small_100`` with the shipped photo-pretrained weights, 64 px), the exported
ONNX file (and, for adip, the TorchScript file) gives the checkpoint's logits within 1e-4 and
the same top-1 class on every one of the benchmark's 2,240 images, at batch 1 and at batch 64;
the ADiP export classifies held-out images in a process where torch cannot be imported.

The students train for 3 steps per stage (``client-distiller run``, teacher ``vl2v-tiny`` in
process): the point is that the exported graph equals the checkpoint, not accuracy.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from client_distiller.cli import main
from client_distiller.export import (
    FP32_TOLERANCE,
    CheckpointPredictor,
    compare_on_images,
    open_predictor,
)
from client_distiller.models import load_student
from student_runtime import read_image
from tests.client_distiller.test_export import export_all
from tests.student_runtime.torch_free import predict_torch_free

pytestmark = pytest.mark.slow
assets = pytest.importorskip("demo_world.assets")

ALGORITHMS = ("erm", "kd", "adip")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The demo benchmark, three trained students and their exports."""
    root = tmp_path_factory.mktemp("export-demo")
    data = Path(assets.ensure_demo_benchmark(root / "data", progress=False))
    out = root / "out"
    code = main(
        [
            "run", "--data", str(data), "--target-domain", "sketch", "--local-teacher",
            "vl2v-tiny", "--algorithms", ",".join(ALGORITHMS), "--views", "1", "--steps", "3",
            "--align-steps", "3", "--batch-size", "4", "--cache-dir", str(root / "cache"),
            "--out", str(out), "--no-progress", "--threads", "1",
        ]
    )  # fmt: skip
    assert code == 0
    records = {
        r["algorithm"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())
    }
    ckpt = {name: Path(records[name]["checkpoint"]) for name in ALGORITHMS}
    exports = {(name, "onnx"): root / f"{name}.onnx" for name in ALGORITHMS}
    exports["adip", "torchscript"] = root / "adip.torchscript.pt"
    export_all([(ckpt[name], fmt, path) for (name, fmt), path in exports.items()])
    files = sorted(data.rglob("*.png"))
    return {
        "data": data,
        "ckpt": ckpt,
        "exports": exports,
        "files": files,
        "images": [read_image(p) for p in files],
    }


@pytest.mark.parametrize(
    ("name", "fmt"), [("erm", "onnx"), ("kd", "onnx"), ("adip", "onnx"), ("adip", "torchscript")]
)
def test_export_matches_the_checkpoint_on_every_demo_image(demo: dict, name: str, fmt: str):
    student = load_student(demo["ckpt"][name])
    assert student.backbone_spec["name"] == "mobilenetv3_small_100" and student.input_size == 64
    assert student.head_kind == ("text" if name == "adip" else "linear")
    reference = CheckpointPredictor(student)
    exported = open_predictor(demo["exports"][name, fmt])
    assert exported.kind == fmt
    parity = compare_on_images(reference, exported, demo["images"], batch_size=64)
    assert parity.images == 2240 == len(demo["files"])
    assert parity.top1_identical, parity
    assert parity.max_abs_diff <= FP32_TOLERANCE, parity
    # Batch 1 (the dynamic batch dimension's other end) on one image of every class and style.
    sample = demo["images"][::80]
    single = compare_on_images(reference, exported, sample, batch_size=1)
    assert single.images == 28 and single.within(FP32_TOLERANCE), single


def test_demo_adip_export_classifies_held_out_images_without_torch(demo: dict) -> None:
    held_out = sorted((demo["data"] / "sketch").rglob("*.png"))[::40]  # 14: 2 per class
    result = predict_torch_free(demo["exports"]["adip", "onnx"], held_out)
    student = load_student(demo["ckpt"]["adip"])
    with torch.no_grad():
        expected = student(student.preprocess([read_image(p) for p in held_out])).numpy()
    assert result["classes"] == student.classes
    assert np.abs(np.array(result["logits"]) - expected).max() <= FP32_TOLERANCE
    top1 = [labels[0] for _, labels, _ in result["predictions"]]
    assert top1 == [student.classes[i] for i in expected.argmax(1)]
    assert [path for path, _, _ in result["predictions"]] == [str(p) for p in held_out]
