"""Leave-one-domain-out experiments: fetch the teacher's answers, train, evaluate, record.

Protocol (DomainBed): every domain is split in/out (80/20) by a seeded permutation; training
uses the source in-splits; the ID number is the accuracy on the source out-splits, the OOD
number the accuracy on the target's in-split. One JSON line per (target, algorithm, seed,
views) goes to ``results.jsonl``.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from client_distiller.algorithms import ALGORITHMS, Algorithm, Batch, BuildContext, HParams
from client_distiller.data import DomainFolder, Sample, ViewBank, load_image
from client_distiller.models.student import (
    Student,
    build_backbone,
    timm_data_config,
    to_tensor_batch,
)
from client_distiller.plan import build_plan, fetch_plan
from client_distiller.results import append_record
from client_distiller.train import PairData, TrainConfig, train

ONLINE = "online"


@dataclass
class ExperimentConfig:
    """Everything that defines one leave-one-domain-out experiment (minus the teacher)."""

    algorithms: list[str]
    seeds: list[int]
    views: list[int | str]  # K values, or "online"
    out_dir: Path
    hp: HParams = field(default_factory=HParams)
    loop: TrainConfig = field(default_factory=TrainConfig)
    backbone_spec: dict[str, Any] = field(default_factory=lambda: {"kind": "demo"})
    pretrained: bool = True
    student_size: int | None = None  # None: the backbone's pretraining size
    prompts: list[str] = field(default_factory=lambda: ["a photo of a {}"])
    holdout_fraction: float = 0.2
    split_seed: int = 0
    view_seed: int = 0
    progress: bool = True


@dataclass
class EvalSet:
    """One domain's evaluation split, as tensors at one input size."""

    domain: str
    split: str  # "out" (source: ID) or "in" (target: OOD)
    samples: list[Sample]
    t_img: torch.Tensor | None  # teacher embeddings of the plain images (zero-shot)
    _x: dict[int, torch.Tensor] = field(default_factory=dict)

    def x(self, size: int) -> torch.Tensor:
        """uint8 images resized from the files to ``size`` (as ``predict`` does)."""
        if size not in self._x:
            self._x[size] = to_tensor_batch([load_image(s) for s in self.samples], size)
        return self._x[size]

    @property
    def y(self) -> torch.Tensor:
        return torch.tensor([s.label for s in self.samples])


@dataclass
class TargetData:
    """What every algorithm of one held-out domain shares."""

    target: str
    sources: list[str]
    classes: list[str]
    class_text: torch.Tensor
    logit_scale: float
    fingerprint: str
    teacher_size: int
    train_samples: list[Sample]
    views: int
    pair_x: torch.Tensor  # (N*K, 3, S, S) uint8 at the teacher's size, row = (sample, view)
    pair_y: torch.Tensor
    pair_domain: torch.Tensor
    pair_t: torch.Tensor
    evals: list[EvalSet]
    queries_sent: int = 0
    text_queries: int = 0
    _resized: dict[int, torch.Tensor] = field(default_factory=dict)

    def pairs(self, size: int, online=None) -> PairData:
        """Training pairs at the student's input size."""
        if size not in self._resized:
            x = self.pair_x
            if size != self.teacher_size:
                x = F.interpolate(
                    x.float(),
                    size=(size, size),
                    mode="bilinear",
                    antialias=True,
                    align_corners=False,
                )
                x = x.round().clamp(0, 255).to(torch.uint8)
            self._resized[size] = x
        return PairData(
            x=self._resized[size],
            y=self.pair_y,
            domain=self.pair_domain,
            t_img=self.pair_t,
            online=online,
        )


def prepare_target(
    dataset: DomainFolder, target: str, teacher, config: ExperimentConfig, views: int
) -> TargetData:
    """Fetch (or read from the cache) the teacher's answers for one held-out domain.

    Args:
        dataset: the data.
        target: held-out domain.
        teacher: a (cached) teacher.
        config: the experiment.
        views: K views per training image.
    """
    plan = build_plan(
        dataset,
        target,
        views=views,
        prompts=config.prompts,
        zeroshot=True,
        holdout_fraction=config.holdout_fraction,
        split_seed=config.split_seed,
        view_seed=config.view_seed,
    )
    sent0 = getattr(teacher, "sent", 0)
    emb = fetch_plan(plan, teacher, progress=config.progress)
    size = teacher.card.image_size
    bank = plan.view_bank(size)
    splits = plan.splits
    xs, ys, ds, ts = [], [], [], []
    domain_index = {d: i for i, d in enumerate(splits.source_domains)}
    for s in tqdm(
        splits.train,
        desc=f"views {target}",
        disable=not config.progress,
        leave=False,
        dynamic_ncols=True,
    ):
        img = load_image(s)
        for v in range(views):
            xs.append(bank.make_view(img, s.id, v))
            ys.append(s.label)
            ds.append(domain_index[s.domain])
            ts.append(emb.train[(s.id, v)])
    evals = [
        EvalSet(d, "out", [s for s in splits.val if s.domain == d], None)
        for d in splits.source_domains
    ]
    evals.append(EvalSet(target, "in", splits.test, None))
    for ev in evals:
        ev.t_img = torch.from_numpy(np.stack([emb.eval[s.id] for s in ev.samples]))
    return TargetData(
        target=target,
        sources=list(splits.source_domains),
        classes=list(dataset.classes),
        class_text=torch.from_numpy(np.asarray(emb.class_texts)),
        logit_scale=float(emb.logit_scale),
        fingerprint=emb.fingerprint,
        teacher_size=size,
        train_samples=list(splits.train),
        views=views,
        pair_x=to_tensor_batch(xs, size),
        pair_y=torch.tensor(ys),
        pair_domain=torch.tensor(ds),
        pair_t=torch.from_numpy(np.stack(ts)),
        evals=evals,
        queries_sent=getattr(teacher, "sent", 0) - sent0,
        text_queries=len(plan.text_queries),
    )


class OnlineTeacherViews:
    """``--views online``: a fresh random view of every training row at every step.

    View indices are never reused within a run, so every view is a new paid query (the
    reference code's behaviour); ``queries`` counts them.
    """

    def __init__(self, data: TargetData, teacher, *, seed: int, student_size: int) -> None:
        self.samples = data.train_samples
        self.teacher = teacher
        self.bank = ViewBank(2**62, size=data.teacher_size, seed=1_000_003 * (seed + 1))
        self.student_size = student_size
        self.images: dict[int, Any] = {}
        self.queries = 0
        self._next = 1  # view 0 is the plain image; online views start after it

    def __call__(self, rows: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        views = []
        for r in rows.tolist():
            if r not in self.images:
                self.images[r] = load_image(self.samples[r])
            views.append(self.bank.make_view(self.images[r], self.samples[r].id, self._next))
            self._next += 1
        emb = self.teacher.embed_images(views, purpose="online-views")
        self.queries += len(views)
        return to_tensor_batch(views, self.student_size), torch.from_numpy(emb)


@torch.no_grad()
def accuracy(algorithm: Algorithm, ev: EvalSet, size: int, batch_size: int = 256) -> float:
    """Top-1 accuracy of ``algorithm`` on an evaluation split."""
    correct = 0
    y = ev.y
    x = ev.x(size) if algorithm.student is not None else None
    for start in range(0, len(y), batch_size):
        sl = slice(start, start + batch_size)
        batch = Batch(
            x=x[sl].float() / 255.0 if x is not None else torch.empty(0),
            y=y[sl],
            t_img=ev.t_img[sl] if ev.t_img is not None else None,
        )
        correct += int((algorithm.predict_batch(batch).argmax(1) == batch.y).sum())
    return correct / max(1, len(y))


def _student_size(config: ExperimentConfig) -> int:
    if config.student_size:
        return config.student_size
    backbone, _ = build_backbone(config.backbone_spec, pretrained=False)
    return timm_data_config(backbone)["input_size"]


def _config_hash(config: ExperimentConfig, data: TargetData, name: str) -> str:
    """Short hash of everything a trained checkpoint depends on (stale runs are not reused)."""
    blob = json.dumps(
        {
            "algorithm": name,
            "hp": asdict(config.hp),
            "loop": {k: v for k, v in asdict(config.loop).items() if k != "progress"},
            "backbone": config.backbone_spec,
            "pretrained": config.pretrained,
            "size": config.student_size,
            "prompts": config.prompts,
            "split": [config.holdout_fraction, config.split_seed, config.view_seed],
            "teacher": data.fingerprint,
            "n_train": len(data.train_samples),
            # Checkpoints from before each run's seed drove its sampler are not reused.
            "sampler": "per-run-seed",
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def run_one(
    name: str,
    data: TargetData,
    config: ExperimentConfig,
    seed: int,
    view_label: int | str,
    teacher,
    dataset_name: str,
) -> dict[str, Any]:
    """Train and evaluate one (algorithm, seed) on one held-out domain; returns the record."""
    cls = ALGORITHMS[name]
    inner = getattr(teacher, "teacher", teacher)
    visual = getattr(getattr(inner, "model", None), "visual", None)
    card = teacher.card
    backbone_spec = config.backbone_spec
    size = config.student_size or _student_size(config)
    mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    if cls is not ALGORITHMS["sd"] and cls is not ALGORITHMS["zeroshot"]:
        backbone, _ = build_backbone(backbone_spec, pretrained=False)
        cfg = timm_data_config(backbone)
        mean, std = cfg["mean"], cfg["std"]
    ctx = BuildContext(
        classes=data.classes,
        class_text=data.class_text,
        logit_scale=data.logit_scale,
        prompts=config.prompts,
        teacher_fingerprint=data.fingerprint,
        backbone_spec=backbone_spec,
        pretrained=config.pretrained,
        input_size=size,
        mean=mean,
        std=std,
        teacher_visual=visual,
        teacher_spec={
            "name": card.id,
            "image_size": card.image_size,
            "mean": card.image_mean,
            "std": card.image_std,
        },
    )
    torch.manual_seed(seed)
    algorithm = cls.build(ctx, config.hp)
    if algorithm.student is not None:
        size = algorithm.student.input_size  # SD uses the teacher's input size
    n_train = len(data.train_samples)
    queries_used = 0
    online = None
    t0 = time.perf_counter()
    stage_seconds: dict[str, float] = {}
    best_val: dict[str, float] = {}
    resumed_from: dict[str, int] = {}
    reused: list[str] = []
    workdir = (
        config.out_dir
        / "checkpoints"
        / data.target
        / f"{name}-K{view_label}-s{seed}-{_config_hash(config, data, name)}"
    )
    if algorithm.stages:
        if view_label == ONLINE and algorithm.needs_teacher_images:
            online = OnlineTeacherViews(data, teacher, seed=seed, student_size=size)
        pairs = data.pairs(size, online=online)
        if online is not None:  # one row per training image; the view is drawn each step
            first = torch.arange(0, len(pairs), data.views)
            pairs = PairData(
                x=pairs.x[first],
                y=pairs.y[first],
                domain=pairs.domain[first],
                t_img=pairs.t_img[first],
                online=online,
            )
        val = [ev for ev in data.evals if ev.split == "out"]
        eval_fn: Callable[[Algorithm], float] = lambda a: float(
            np.mean([accuracy(a, ev, size) for ev in val])
        )
        # The run's seed drives the batch order as well as the initialization: with one
        # sampler seed for every run, a student without random init (sd) trained identically.
        loop = replace(config.loop, seed=seed)
        result = train(
            algorithm, pairs, loop, workdir, eval_fn=eval_fn, desc=f"{name} {data.target} s{seed}"
        )
        stage_seconds, best_val = result.stage_seconds, result.best_val
        resumed_from = result.resumed_from
        reused = result.reused_stages
        if algorithm.needs_teacher_images:
            queries_used = online.queries if online else n_train * data.views
            queries_used += data.text_queries
    else:  # zero-shot: the teacher's embeddings of the evaluation images and the texts
        queries_used = sum(len(ev.samples) for ev in data.evals) + data.text_queries
    per_domain = {ev.domain: accuracy(algorithm, ev, size) for ev in data.evals}
    id_acc = float(np.mean([per_domain[d] for d in data.sources]))
    record = {
        "dataset": dataset_name,
        "target": data.target,
        "algorithm": name,
        "seed": seed,
        "views": view_label,
        "id_acc": id_acc,
        "ood_acc": per_domain[data.target],
        "per_domain": per_domain,
        "queries_used": int(queries_used),
        "online_queries": int(online.queries) if online else 0,
        "n_train_images": n_train,
        "stage_seconds": stage_seconds,
        "best_val": best_val,
        "resumed_from": resumed_from,
        "reused_stages": reused,
        "seconds": time.perf_counter() - t0,
        "checkpoint": str(workdir / f"{algorithm.stages[-1]}.pt") if algorithm.stages else None,
        "hp": asdict(config.hp),
        "loop": {**{k: v for k, v in asdict(config.loop).items() if k != "progress"}, "seed": seed},
        "student": config.backbone_spec
        if name != "sd"
        else {"kind": "open_clip_visual", "name": card.id},
        "teacher": {"id": card.id, "fingerprint": data.fingerprint},
        "time": time.time(),
    }
    return record


def run_experiment(
    dataset: DomainFolder,
    targets: Sequence[str],
    teacher,
    config: ExperimentConfig,
    *,
    dataset_name: str = "",
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Leave-one-domain-out over ``targets`` for every view setting, algorithm and seed.

    Every record is appended to ``<out_dir>/results.jsonl`` as soon as it exists, so an
    interrupted experiment keeps its finished runs (and their checkpoints are reused).
    """
    config.out_dir.mkdir(parents=True, exist_ok=True)
    results_path = config.out_dir / "results.jsonl"
    records = []
    for target in targets:
        for view_label in config.views:
            # Online runs still fetch view 0 (plus texts and eval images) for the shared data.
            k = 1 if view_label == ONLINE else int(view_label)
            data = prepare_target(dataset, target, teacher, config, k)
            log(
                f"[{target} K={view_label}] teacher: {data.queries_sent} new queries sent "
                f"for {len(data.train_samples)} training images x {k} views"
            )
            for seed in config.seeds:
                for name in config.algorithms:
                    if view_label == ONLINE and not ALGORITHMS[name].needs_teacher_images:
                        continue  # erm / zero-shot do not depend on the views
                    record = run_one(name, data, config, seed, view_label, teacher, dataset_name)
                    record["queries_sent_fetch"] = data.queries_sent
                    append_record(results_path, record)
                    records.append(record)
                    log(
                        f"[{target} K={view_label} seed={seed}] {name:8s} "
                        f"ID {100 * record['id_acc']:5.1f}  OOD {100 * record['ood_acc']:5.1f}"
                        f"  queries {record['queries_used']}  ({record['seconds']:.0f}s)"
                    )
    return records


def standard_error(values: Sequence[float]) -> float:
    """Standard error of the mean (0 for a single value)."""
    if len(values) < 2:
        return 0.0
    return float(np.std(values, ddof=1) / math.sqrt(len(values)))


__all__ = [
    "ONLINE",
    "EvalSet",
    "ExperimentConfig",
    "TargetData",
    "accuracy",
    "prepare_target",
    "run_experiment",
    "run_one",
    "standard_error",
]


def student_accuracy(student: Student, samples: Sequence[Sample], batch_size: int = 128) -> float:
    """Accuracy of a loaded student checkpoint on samples (``client-distiller evaluate``)."""
    correct = 0
    student.eval()
    with torch.no_grad():
        for start in range(0, len(samples), batch_size):
            chunk = samples[start : start + batch_size]
            x = student.preprocess([load_image(s) for s in chunk])
            y = torch.tensor([s.label for s in chunk])
            correct += int((student(x).argmax(1) == y).sum())
    return correct / max(1, len(samples))
