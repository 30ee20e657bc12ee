"""Export on the tiny test student: the exported files compute what the checkpoint computes (at
batch 1 and more), carry its metadata, run torch-free, and ``predict``/``evaluate`` take any of
them; broken files are one ``error:`` line.

The students are trained for two steps by ``client-distiller run`` (``test_resnet`` at 32 px,
the random-weight ``vl2v-tiny`` teacher in process) on a 36-image folder of real PNGs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from client_distiller.cli import main
from client_distiller.export import (
    FP32_TOLERANCE,
    CheckpointPredictor,
    OnnxPredictor,
    TorchScriptPredictor,
    compare_on_images,
    compare_on_random,
    detect_kind,
    file_sha256,
    open_predictor,
)
from client_distiller.models import load_student
from model_io import state_dict_fingerprint
from student_runtime import ModelLoadError, Student, UnreadableImageError, read_image
from tests.helpers.synthetic import write_domainbed
from tests.student_runtime.torch_free import predict_torch_free, run_torch_free

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def export_all(jobs: Sequence[tuple[Path, str, Path]], *, parallel: int = 2) -> None:
    """``client-distiller export`` for each (checkpoint, format, out), ``parallel`` processes at
    a time: the ONNX exporter is single-threaded Python for tens of seconds per model."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    pending, running = list(jobs), []
    while pending or running:
        while pending and len(running) < parallel:
            ckpt, fmt, out = pending.pop(0)
            argv = ["export", "--checkpoint", str(ckpt), "--format", fmt, "--out", str(out)]
            code = f"import sys; from client_distiller.cli import main; sys.exit(main({argv!r}))"
            proc = subprocess.Popen(
                [sys.executable, "-c", code],
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            running.append((proc, argv))
        proc, argv = running.pop(0)
        output, _ = proc.communicate(timeout=1200)
        assert proc.returncode == 0, (argv, output[-3000:])
        assert "verified against the checkpoint" in output, output


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Data, the erm and adip checkpoints and their exports (adip: ONNX and TorchScript)."""
    root = tmp_path_factory.mktemp("export")
    data = write_domainbed(root / "data", per_class=4)
    out = root / "out"
    code = main(
        [
            "run", "--data", str(data), "--target-domain", "outline", "--local-teacher",
            "vl2v-tiny", "--student", "test_resnet", "--student-size", "32", "--no-pretrained",
            "--algorithms", "erm,adip", "--views", "1", "--steps", "2", "--align-steps", "2",
            "--batch-size", "2", "--cache-dir", str(root / "cache"), "--out", str(out),
            "--no-progress", "--threads", "1",
        ]
    )  # fmt: skip
    assert code == 0
    records = {
        r["algorithm"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())
    }
    ckpt = {name: Path(records[name]["checkpoint"]) for name in ("erm", "adip")}
    exports = {
        "adip-onnx": root / "adip.onnx",
        "adip-torchscript": root / "adip.torchscript.pt",
        "erm-torchscript": root / "erm.torchscript.pt",
    }
    export_all(
        [(ckpt[key.split("-")[0]], key.split("-")[1], path) for key, path in exports.items()]
    )
    images = sorted(data.rglob("*.png"))
    return {"root": root, "data": data, "ckpt": ckpt, "exports": exports, "images": images,
            "records": records}  # fmt: skip


def _reference(tiny: dict, key: str) -> CheckpointPredictor:
    return CheckpointPredictor(load_student(tiny["ckpt"][key.split("-")[0]]))


@pytest.mark.parametrize("key", ["adip-onnx", "adip-torchscript", "erm-torchscript"])
def test_exports_match_the_checkpoint_at_batch_1_and_more(tiny: dict, key: str) -> None:
    reference, exported = _reference(tiny, key), open_predictor(tiny["exports"][key])
    assert exported.kind == key.split("-")[1]
    pil = [read_image(p) for p in tiny["images"]]
    for batch_size in (1, 7, 64):  # 64: all 36 images in one batch
        parity = compare_on_images(reference, exported, pil, batch_size=batch_size)
        assert parity.images == 36 and parity.top1_identical, parity
        assert parity.max_abs_diff <= FP32_TOLERANCE, parity
    random = compare_on_random(reference, exported, batches=(1, 5))
    assert random.within(FP32_TOLERANCE), random
    # The comparison can fail: a checkpoint against the other algorithm's export differs.
    other = "erm" if key.startswith("adip") else "adip"
    wrong = CheckpointPredictor(load_student(tiny["ckpt"][other]))
    assert compare_on_images(wrong, exported, pil).max_abs_diff > FP32_TOLERANCE


def test_exported_files_carry_the_checkpoints_metadata(tiny: dict) -> None:
    ckpt = tiny["ckpt"]["adip"]
    student = load_student(ckpt)
    onnx = OnnxPredictor(tiny["exports"]["adip-onnx"]).metadata
    script = TorchScriptPredictor(tiny["exports"]["adip-torchscript"]).metadata
    assert onnx.classes == ["circle", "square", "triangle"] == student.classes
    assert (onnx.input_size, onnx.head, onnx.prompts) == (32, "text", ["a photo of a {}"])
    assert onnx.mean == pytest.approx(student.mean.flatten().tolist())
    assert onnx.std == pytest.approx(student.std.flatten().tolist())
    assert onnx.logit_scale == pytest.approx(student.logit_scale)
    assert onnx.teacher_fingerprint == tiny["records"]["adip"]["teacher"]["fingerprint"]
    assert onnx.weights_fingerprint == state_dict_fingerprint(student)
    assert onnx.backbone == {"kind": "timm", "name": "test_resnet"}
    assert onnx.source["checkpoint"] == ckpt.name
    assert onnx.source["checkpoint_sha256"] == file_sha256(ckpt)
    assert onnx.source["stage"] == "distill" and onnx.source["algorithm"] == "ADiP"
    assert onnx.exporter["tool"] == "torch.onnx.export(dynamo=True)"
    assert onnx.exporter["opset"] >= 18 and onnx.quantization is None
    assert script.exporter["tool"] == "torch.jit.trace"
    assert script.with_changes(exporter=onnx.exporter) == onnx
    erm = TorchScriptPredictor(tiny["exports"]["erm-torchscript"]).metadata
    assert (erm.head, erm.logit_scale) == ("linear", 1.0)


def test_detect_kind(tiny: dict, tmp_path: Path) -> None:
    assert detect_kind(tiny["ckpt"]["adip"]) == "checkpoint"
    assert detect_kind(tiny["exports"]["adip-onnx"]) == "onnx"
    assert detect_kind(tiny["exports"]["adip-torchscript"]) == "torchscript"
    renamed = tmp_path / "model.bin"  # the contents decide, not the name
    shutil.copy(tiny["exports"]["adip-torchscript"], renamed)
    assert detect_kind(renamed) == "torchscript"


def test_runtime_api_agrees_with_the_checkpoint(tiny: dict) -> None:
    student = Student(tiny["exports"]["adip-onnx"], threads=1)
    images = tiny["images"][:6]
    checkpoint = load_student(tiny["ckpt"]["adip"])
    with torch.no_grad():
        expected = checkpoint(checkpoint.preprocess([read_image(p) for p in images])).numpy()
    assert np.abs(student.logits(images, batch_size=4) - expected).max() <= FP32_TOLERANCE
    top = student.predict([*images[:2], read_image(images[2])], top_k=2)
    assert [p.label for p in top] == [checkpoint.classes[i] for i in expected[:3].argmax(1)]
    assert top[0].path == str(images[0]) and top[2].path is None
    assert all(len(p.labels) == 2 and p.probabilities[0] >= p.probabilities[1] for p in top)
    junk = tiny["root"] / "junk.png"
    junk.write_bytes(b"junk")
    with pytest.raises(UnreadableImageError):
        student.predict([junk])
    for wrong in (tiny["exports"]["adip-torchscript"], tiny["ckpt"]["adip"], junk):
        with pytest.raises(ModelLoadError):
            Student(wrong)


def test_runtime_needs_no_torch(tiny: dict) -> None:
    images = tiny["images"][::5]
    result = predict_torch_free(tiny["exports"]["adip-onnx"], images)
    checkpoint = load_student(tiny["ckpt"]["adip"])
    with torch.no_grad():
        expected = checkpoint(checkpoint.preprocess([read_image(p) for p in images])).numpy()
    assert result["classes"] == checkpoint.classes
    assert np.abs(np.array(result["logits"]) - expected).max() <= FP32_TOLERANCE
    top1 = [labels[0] for _, labels, _ in result["predictions"]]
    assert top1 == [checkpoint.classes[i] for i in expected.argmax(1)]
    # The command line too: a folder, one unreadable file, a count at the end.
    folder = tiny["root"] / "cli-images"
    shutil.copytree(tiny["data"] / "noisy", folder, dirs_exist_ok=True)
    (folder / "broken.png").write_bytes(b"broken")
    proc = run_torch_free("cli", [tiny["exports"]["adip-onnx"], folder, "--json"])
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(lines) == 12 and all(set(r) == {"path", "labels", "probabilities"} for r in lines)
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "broken.png" in warnings[0]
    assert "classified 12 image(s); skipped 1 unreadable file(s)" in proc.stderr


def _predict(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["predict", *argv])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def test_predict_takes_any_kind_of_file_and_folders(
    tiny: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tiny["data"]  # <domain>/<class>/<n>.png: searched recursively
    results = {}
    for name in ("checkpoint", "adip-onnx", "adip-torchscript"):
        model = tiny["ckpt"]["adip"] if name == "checkpoint" else tiny["exports"][name]
        code, out, err = _predict(["--checkpoint", str(model), str(folder), "--top-k", "2", "--json"], capsys)  # fmt: skip
        assert code == 0, err
        rows = [json.loads(line) for line in out.splitlines()]
        assert [r["path"] for r in rows] == [str(p) for p in tiny["images"]]
        assert all(len(r["labels"]) == 2 for r in rows)
        assert err.strip() == "classified 36 image(s); skipped 0 unreadable file(s)"
        results[name] = rows
    for name in ("adip-onnx", "adip-torchscript"):
        for a, b in zip(results["checkpoint"], results[name], strict=True):
            assert a["labels"][0] == b["labels"][0]
            assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-5)
    # Text lines: PATH<TAB>label p, label p.
    code, out, _ = _predict(["--checkpoint", str(tiny["exports"]["adip-onnx"]), str(tiny["images"][0]), "--top-k", "2"], capsys)  # fmt: skip
    path, ranked = out.strip().split("\t")
    assert code == 0 and path == str(tiny["images"][0]) and len(ranked.split(", ")) == 2


def test_predict_skips_unreadable_files(tiny: dict, tmp_path: Path, capsys) -> None:
    model = str(tiny["exports"]["adip-onnx"])
    shutil.copy(tiny["images"][0], tmp_path / "good.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    (tmp_path / "notes.txt").write_text("ignored in a folder: not an image suffix")
    code, out, err = _predict(["--checkpoint", model, str(tmp_path), str(tmp_path / "gone.jpg")], capsys)  # fmt: skip
    assert code == 0 and len(out.splitlines()) == 1
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2 and "bad.png" in warnings[0] and "gone.jpg" in warnings[1]
    assert err.splitlines()[-1] == "classified 1 image(s); skipped 2 unreadable file(s)"
    # Nothing classified: non-zero, one error line.
    code, out, err = _predict(["--checkpoint", model, str(tmp_path / "bad.png")], capsys)
    assert code == 1 and out == ""
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        "error: no image was classified: 1 unreadable file(s) skipped"
    ]
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = _predict(["--checkpoint", model, str(empty)], capsys)
    assert code == 1 and err.startswith("error: no image files found in")


def test_evaluate_scores_every_image_with_any_kind_of_file(tiny: dict, capsys) -> None:
    checkpoint = load_student(tiny["ckpt"]["erm"])
    tables = []
    for model in (tiny["ckpt"]["erm"], tiny["exports"]["erm-torchscript"]):
        assert main(["evaluate", "--checkpoint", str(model), "--data", str(tiny["data"])]) == 0
        out = capsys.readouterr().out
        assert "every image of each domain is scored (not the ID/OOD splits of `run`)" in out
        tables.append(out.split("\n\n", 1)[1])
    assert tables[0] == tables[1]
    lines = tables[0].splitlines()
    assert lines[0].split() == ["domain", "images", "accuracy", "%"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:]}
    assert set(rows) == {"flat", "noisy", "outline", "all"}
    for domain in ("flat", "noisy", "outline"):
        paths = sorted((tiny["data"] / domain).rglob("*.png"))
        with torch.no_grad():
            pred = checkpoint(checkpoint.preprocess([read_image(p) for p in paths])).argmax(1)
        labels = torch.tensor([checkpoint.classes.index(p.parent.name) for p in paths])
        accuracy = round(100 * float((pred == labels).float().mean()), 2)
        assert rows[domain][0] == "12" and float(rows[domain][1]) == pytest.approx(accuracy)
    assert rows["all"][0] == "36"


def test_broken_model_files_are_one_error_line(tiny: dict, tmp_path: Path, capsys) -> None:
    good = tiny["ckpt"]["adip"].read_bytes()
    broken = {
        "truncated.pt": good[: len(good) // 2],
        "noise.pt": bytes(range(256)) * 40,
        "empty.pt": b"",
        "bogus.onnx": b"\x08\x07garbage",
    }
    for name, content in broken.items():
        (tmp_path / name).write_bytes(content)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "not-a-student.pt")
    image = str(tiny["images"][0])
    for name in [*broken, "not-a-student.pt", "missing.pt"]:
        path = str(tmp_path / name)
        for argv in (
            ["predict", "--checkpoint", path, image],
            ["evaluate", "--checkpoint", path, "--data", str(tiny["data"])],
            ["export", "--checkpoint", path, "--out", str(tmp_path / "x.onnx")],
        ):
            code = main(argv)
            err = capsys.readouterr().err
            assert code == 1, (name, argv[0])
            assert "Traceback" not in err and len(err.strip().splitlines()) == 1, (name, err)
            assert err.startswith("error: ") and name in err, err
    assert not (tmp_path / "x.onnx").exists()


def test_export_defaults_and_refusals(tiny: dict, tmp_path: Path, capsys) -> None:
    ckpt = tmp_path / "distill.pt"
    shutil.copy(tiny["ckpt"]["adip"], ckpt)
    argv = ["export", "--checkpoint", str(ckpt), "--format", "torchscript"]
    assert main([*argv, "--verify-images", str(tiny["data"])]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "distill.torchscript.pt").is_file()
    assert "verified against the checkpoint (random inputs): max |logit diff|" in out
    assert "over 4 inputs, top-1 identical on 4/4" in out
    assert "(images, batch 64): max |logit diff|" in out and "on 36/36" in out
    assert "(images, batch 1): max |logit diff|" in out and "on 4/4" in out
    (tmp_path / "bad.png").write_bytes(b"bad")
    code = main([*argv, "--verify-images", str(tmp_path / "bad.png")])
    assert code == 1 and "cannot read image" in capsys.readouterr().err
    assert not list(tmp_path.glob(".*.tmp"))  # written through a temporary sibling
    code = main(["export", "--checkpoint", str(ckpt), "--out", str(ckpt)])
    assert code == 1 and "would overwrite the checkpoint" in capsys.readouterr().err
    code = main(["export", "--checkpoint", str(ckpt), "--format", "tflite"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: --format: Input should be 'onnx' or 'torchscript'")
