"""The deployed student: torch eager vs TorchScript vs onnxruntime, and what a prediction costs.

Rows (issue 17):
  s1. onnxruntime fp32 vs torch eager, latency at batch 1 (target >= 1.5x)
  s2. TorchScript vs torch eager, latency at batch 1
  s3. onnxruntime fp32 vs torch eager, throughput at batch 32
  s4. TorchScript vs torch eager, throughput at batch 32
  s5. cost per image on one CPU thread vs the vendor's price per image query, and the
      break-even number of queries after which the distilled student has paid for itself
  s6. int8 (onnxruntime static QDQ quantization of the convolutions, and dynamic): size, speed
      and accuracy change; not kept by ``client-distiller export`` (see the README)

Every backend runs on one thread (torch.set_num_threads(1); onnxruntime intra- and inter-op
threads 1) on the same float32 batches of real demo images; the model only (decoding and
resizing cost the same whatever runs the model; they are timed once and added for the cost).
The backends alternate in every round (the order rotates) and each ratio is the median over
the rounds of the ratio measured within one round, so the machine's load drifts out of it.

The student: ``--checkpoint`` (a trained one; needed for the int8 accuracy change), else the
demo student architecture in its ADiP form (the shipped photo-pretrained backbone, a random
projection and text head: a forward pass costs the same whatever the values).

    .venv/bin/python benchmarks/bench_student.py                       # ~2-4 min on 2 cores
    .venv/bin/python benchmarks/bench_student.py --checkpoint runs/demo/checkpoints/sketch/adip-*/distill.pt
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from _common import BENCH_DIR, Result, Row

Backend = Callable[[np.ndarray], np.ndarray]


def demo_student(classes: Sequence[str]) -> tuple[Any, str]:
    """The demo student architecture as an ADiP student (random projection and text head)."""
    import torch

    from client_distiller.commands import demo
    from client_distiller.models.student import Student
    from demo_world.assets import DEMO_STUDENT_MEAN, DEMO_STUDENT_STD, demo_student_checkpoint

    spec = demo.student()
    pretrained = demo_student_checkpoint().is_file()
    backbone, dim = spec.build(pretrained=pretrained)
    torch.manual_seed(0)
    student = Student(
        backbone,
        backbone_spec=spec.spec(),
        feature_dim=dim,
        classes=classes,
        head="text",
        class_text=torch.randn(len(classes), 64),  # the demo teacher's embedding dim
        logit_scale=20.0,
        input_size=64,
        mean=DEMO_STUDENT_MEAN,
        std=DEMO_STUDENT_STD,
    ).eval()
    label = "shipped weights" if pretrained else "random weights: shipped file missing"
    return student, f"demo student architecture as ADiP ({spec.name}, {label}; random head)"


def time_calls(fn: Backend, x: np.ndarray, seconds: float, min_calls: int = 5) -> float:
    """Median seconds per call of ``fn(x)`` over ``seconds`` (after one warm-up call)."""
    fn(x)
    times: list[float] = []
    end = time.perf_counter() + seconds
    while len(times) < min_calls or time.perf_counter() < end:
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def ort_session(path: Path) -> Backend:
    """An onnxruntime session on one thread, as a batch -> logits function."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


def torch_backend(module: Any) -> Backend:
    import torch

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(x)).numpy()

    return run


def quantize(fp32: Path, folder: Path, calibration: np.ndarray) -> dict[str, Path]:
    """int8 variants of an ONNX student: static QDQ (convolutions, per channel, percentile
    calibration on ``calibration``) and dynamic (weights only)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.start = 0

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self.start >= len(calibration):
                return None
            batch = calibration[self.start : self.start + 32]
            self.start += 32
            return {"images": batch}

    pre = folder / "pre.onnx"
    # Symbolic shape inference fails on the exporter's Expand nodes; ONNX's own suffices.
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    static, dynamic = folder / "int8-static.onnx", folder / "int8-dynamic.onnx"
    quantize_static(
        str(pre),
        str(static),
        Reader(),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["Conv"],  # quantizing the text head's matmul/normalize breaks it
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.Percentile,
    )
    quantize_dynamic(str(pre), str(dynamic), weight_type=QuantType.QInt8)
    return {"ort-int8-static": static, "ort-int8-dynamic": dynamic}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; writes ``runs/bench/student.json``."""
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--checkpoint", type=Path, default=None, help="a trained student checkpoint")
    p.add_argument("--target-domain", default="sketch", help="held-out style of the plan (sketch)")
    p.add_argument("--views", type=int, default=4, help="views per image of the ADiP plan (4)")
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds (5)")
    p.add_argument("--seconds", type=float, default=1.0, help="per backend, batch and round (1)")
    p.add_argument(
        "--cpu-hour-usd",
        type=float,
        default=0.04,
        help="price of one CPU thread for an hour (0.04 USD: about one vCPU of a cloud VM)",
    )
    p.add_argument(
        "--price-per-query",
        type=float,
        default=None,
        help="vendor price of one image query (default: the card's, vendor-service's default)",
    )
    p.add_argument("--no-int8", action="store_true", help="skip the int8 measurement")
    p.add_argument("--out", type=Path, default=BENCH_DIR, help="result folder")
    args = p.parse_args(argv)

    import torch

    from client_distiller.commands.common import open_dataset
    from client_distiller.commands.options import DatasetOptions
    from client_distiller.export import export_onnx, export_torchscript, metadata_of
    from client_distiller.export.loading import TorchScriptPredictor, load_checkpoint
    from client_distiller.plan import build_plan
    from student_runtime import read_image, to_batch
    from vendor_service.settings import ModelSettings

    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    result = Result("student")
    load_start = [round(x, 2) for x in os.getloadavg()]
    print(f"load average at start: {load_start}", flush=True)

    dataset = open_dataset(DatasetOptions())  # --data demo, in $VL2V_DATA_DIR
    if args.checkpoint is not None:
        student, extra = load_checkpoint(args.checkpoint)
        what = f"checkpoint {args.checkpoint}"
    else:
        (student, what), extra = demo_student(dataset.classes), {}
    student.eval()
    samples = dataset.samples
    t0 = time.perf_counter()
    images = [read_image(s.path) for s in samples]
    x_all = to_batch(images, student.input_size)
    preprocess_s = (time.perf_counter() - t0) / len(samples)  # decode + resize, per image
    labels = np.array([s.label for s in samples])
    domains = np.array([s.domain for s in samples])
    rng = np.random.default_rng(0)
    held_out = np.where(domains == args.target_domain)[0]
    x1 = x_all[held_out[:1]]
    x32 = x_all[held_out[:32]]

    workdir = Path(tempfile.mkdtemp(prefix="bench-student-"))
    meta = metadata_of(student, checkpoint=args.checkpoint, extra=extra)
    t0 = time.perf_counter()
    export_onnx(student, workdir / "student.onnx", meta)
    export_seconds = time.perf_counter() - t0
    export_torchscript(student, workdir / "student.torchscript.pt", meta)
    backends: dict[str, Backend] = {
        "torch-eager": torch_backend(student),
        "torchscript": torch_backend(
            TorchScriptPredictor(workdir / "student.torchscript.pt").module
        ),
        "ort-fp32": ort_session(workdir / "student.onnx"),
    }
    files = {"ort-fp32": workdir / "student.onnx"}
    if not args.no_int8:
        sources = np.where(domains != args.target_domain)[0]
        calibration = x_all[rng.choice(sources, 256, replace=False)]
        for name, path in quantize(workdir / "student.onnx", workdir, calibration).items():
            backends[name] = ort_session(path)
            files[name] = path

    # Logits of every demo image, for parity and the int8 accuracy change.
    logits = {
        name: np.concatenate([fn(x_all[i : i + 64]) for i in range(0, len(x_all), 64)])
        for name, fn in backends.items()
    }
    names = list(backends)
    per_round: dict[str, dict[int, list[float]]] = {n: {1: [], 32: []} for n in names}
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            for batch, x in ((1, x1), (32, x32)):
                per_round[name][batch].append(time_calls(backends[name], x, args.seconds))
        print(f"round {r + 1}/{args.rounds} done (load {os.getloadavg()[0]:.2f})", flush=True)

    def ratio(name: str, batch: int) -> tuple[float, float, float]:
        values = [
            e / o
            for e, o in zip(per_round["torch-eager"][batch], per_round[name][batch], strict=True)
        ]
        return statistics.median(values), min(values), max(values)

    def ms(name: str, batch: int) -> float:
        return 1e3 * statistics.median(per_round[name][batch]) / batch

    timing = {
        name: {
            "b1_ms": round(ms(name, 1), 3),
            "b32_ms_per_image": round(ms(name, 32), 3),
            "b32_images_per_s": round(1e3 / ms(name, 32), 1),
            "size_mib": round(files[name].stat().st_size / 2**20, 2) if name in files else None,
        }
        for name in names
    }
    for row_id, name, batch, question, goal in (
        ("s1", "ort-fp32", 1, "student latency, batch 1: onnxruntime vs torch eager", 1.5),
        ("s2", "torchscript", 1, "student latency, batch 1: TorchScript vs torch eager", None),
        ("s3", "ort-fp32", 32, "student throughput, batch 32: onnxruntime vs torch eager", None),
        ("s4", "torchscript", 32, "student throughput, batch 32: TorchScript vs eager", None),
    ):
        mid, lo, hi = ratio(name, batch)
        unit = "ms" if batch == 1 else "ms/img"
        result.rows.append(
            Row(
                row_id,
                question,
                f"{mid:.2f}x ({ms(name, batch):.2f} vs {ms('torch-eager', batch):.2f} {unit}; "
                f"rounds {lo:.2f}-{hi:.2f}x)",
                f">= {goal}x" if goal else "(report)",
                (mid >= goal) if goal else None,
                round(mid, 3),
            )
        )

    # Cost: one CPU thread's time per image (model at batch 32 + decode/resize) vs the card.
    card = ModelSettings.model_fields
    price = args.price_per_query
    if price is None:
        price = float(card["price_per_image_query"].default)
    text_price = float(card["price_per_text_query"].default)
    cpu_s = ms("ort-fp32", 32) / 1e3 + preprocess_s
    cost = cpu_s * args.cpu_hour_usd / 3600
    plan = build_plan(dataset, args.target_domain, views=args.views, zeroshot=False).count()
    spend = plan.images * price + plan.texts * text_price
    break_even = spend / (price - cost) if price > cost else float("inf")
    result.rows.append(
        Row(
            "s5",
            "deployed student vs vendor: cost per image; break-even queries",
            f"{cost:.2e} vs {price:.0e} USD/image ({price / cost:,.0f}x cheaper); break-even "
            f"after {break_even:,.0f} queries (distillation spend {spend:.4f} USD)",
            "(report)",
            None,
            round(break_even),
        )
    )
    int8: dict[str, Any] = {}
    if not args.no_int8:

        def accuracy(name: str) -> float:
            return float((logits[name].argmax(1) == labels).mean())

        for name in ("ort-int8-static", "ort-int8-dynamic"):
            int8[name] = {
                "size_mib": timing[name]["size_mib"],
                "b1_speedup_vs_fp32": round(ms("ort-fp32", 1) / ms(name, 1), 3),
                "b32_speedup_vs_fp32": round(ms("ort-fp32", 32) / ms(name, 32), 3),
                "top1_agreement_with_fp32": round(
                    float((logits[name].argmax(1) == logits["ort-fp32"].argmax(1)).mean()), 4
                ),
                "accuracy_all_images": round(accuracy(name), 4),
                "accuracy_change_points": round(100 * (accuracy(name) - accuracy("ort-fp32")), 2),
            }
        s = int8["ort-int8-static"]
        d = int8["ort-int8-dynamic"]
        trained = args.checkpoint is not None
        result.rows.append(
            Row(
                "s6",
                "int8 static; dynamic vs fp32: size, speed b1/b32, accuracy change",
                f"static {s['size_mib']} MiB, {s['b1_speedup_vs_fp32']:.2f}x/"
                f"{s['b32_speedup_vs_fp32']:.2f}x, "
                + (
                    f"{s['accuracy_change_points']:+.2f} pts"
                    if trained
                    else "acc: needs --checkpoint"
                )
                + f"; dynamic {d['size_mib']} MiB, {d['b1_speedup_vs_fp32']:.2f}x/"
                f"{d['b32_speedup_vs_fp32']:.2f}x, "
                + (f"{d['accuracy_change_points']:+.2f} pts" if trained else "acc: n/a")
                + f" (fp32 {timing['ort-fp32']['size_mib']} MiB)",
                "(report)",
                None,
            )
        )
    parity = {
        name: float(np.abs(logits[name] - logits["torch-eager"]).max())
        for name in ("torchscript", "ort-fp32")
    }
    result.details = {
        "student": what,
        "input_size": student.input_size,
        "images": len(samples),
        "timing": timing,
        "per_round_seconds": per_round,
        "preprocess_ms_per_image": round(1e3 * preprocess_s, 3),
        "onnx_export_seconds": round(export_seconds, 1),
        "max_abs_logit_diff_vs_eager_all_images": parity,
        "accuracy_all_images": {
            name: round(float((v.argmax(1) == labels).mean()), 4) for name, v in logits.items()
        },
        "int8": int8,
        "cost": {
            "cpu_hour_usd": args.cpu_hour_usd,
            "cpu_seconds_per_image": cpu_s,
            "usd_per_image": cost,
            "vendor_usd_per_image_query": price,
            "vendor_usd_per_text_query": text_price,
            "plan": {"images": plan.images, "texts": plan.texts, "views": args.views},
            "distillation_spend_usd": spend,
            "break_even_queries": break_even,
        },
        "loadavg_start": load_start,
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
    }
    print(f"timing (median per call, one thread): {timing}")
    print(f"load average at start {load_start}, at end {result.details['loadavg_end']}")
    result.write(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
