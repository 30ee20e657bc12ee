"""The experiment runner: leave-one-domain-out runs that fetch, train, evaluate and record.

For every held-out domain and view setting the runner fetches (or reads from the cache) the
teacher's answers once (``prepare_target``); then every (seed, algorithm) builds its student,
trains it through ``client_distiller.train`` (which owns the checkpoints: a finished run is
reused, a killed one resumes), is evaluated (``client_distiller.evaluation``) and becomes one
``RunRecord`` line in ``<out>/results.jsonl``. What differs between algorithms is read from
their classes (``needs_teacher_images``, ``white_box``, ``has_student``, ``head``, ``stages``,
``describe_student``); the runner has no algorithm-specific branches.

The teacher is asked only for what the chosen algorithms read (``TeacherNeeds``): views of the
training images for the distilling ones, the plain evaluation images for the zero-shot
reference, the class texts for either. ERM alone asks nothing and runs without a teacher.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from client_distiller.algorithms import (
    ALGORITHMS,
    Algorithm,
    BuildContext,
    HParams,
    WhiteBoxTeacher,
)
from client_distiller.data import DomainFolder, Sample, ViewBank, load_image
from client_distiller.evaluation import EvalSet, accuracy, mean_accuracy
from client_distiller.models.student import TimmBackbone, to_tensor_batch
from client_distiller.plan import CLASS_TEXTS, EVAL_IMAGES, TRAIN_VIEWS, build_plan, fetch_plan
from client_distiller.progress import progress_bar
from client_distiller.results import ONLINE, RunRecord, ViewSetting, append_record
from client_distiller.teacher import CachedTeacher, Teacher
from client_distiller.train import PairData, TrainConfig, TrainResult, stage_path, train


@dataclass
class ExperimentConfig:
    """Everything that defines one leave-one-domain-out experiment (minus the teacher).

    Attributes:
        algorithms: registry names, run in this order.
        seeds: one run per seed (initialization and batch order).
        views: K values and/or ``"online"``.
        out_dir: results, checkpoints and plots.
        student: the student's backbone (architecture and pretrained weights).
        hp: hyper-parameters.
        loop: loop settings (its ``seed`` is replaced by each run's seed).
        pretrained: load the backbone's pretrained weights.
        student_size: the student's input size (None: the backbone's pretraining size).
        prompts: prompt templates of the class texts.
        holdout_fraction, split_seed: each domain's in/out split.
        view_seed: seed of the view bank.
        progress: progress bars.
    """

    algorithms: list[str]
    seeds: list[int]
    views: list[ViewSetting]
    out_dir: Path
    student: TimmBackbone
    hp: HParams = field(default_factory=HParams)
    loop: TrainConfig = field(default_factory=TrainConfig)
    pretrained: bool = True
    student_size: int | None = None
    prompts: list[str] = field(default_factory=lambda: ["a photo of a {}"])
    holdout_fraction: float = 0.2
    split_seed: int = 0
    view_seed: int = 0
    progress: bool = True


@dataclass(frozen=True)
class TeacherNeeds:
    """What the chosen algorithms read from the teacher, so the plan asks for nothing else.

    Attributes:
        train_views: the embedding of every training view (kd, adip, sd).
        eval_images: the embedding of every plain evaluation image (the zero-shot reference).
        texts: the class texts (every algorithm that reads the teacher at all).
    """

    train_views: bool
    eval_images: bool
    texts: bool

    @classmethod
    def of(cls, algorithms: Sequence[str]) -> TeacherNeeds:
        """From the algorithms' own facts."""
        classes = [ALGORITHMS[name] for name in algorithms]
        train_views = any(c.needs_teacher_images for c in classes)
        eval_images = any(not c.has_student for c in classes)
        texts = train_views or eval_images or any(c.head == "text" for c in classes)
        return cls(train_views=train_views, eval_images=eval_images, texts=texts)

    @property
    def any(self) -> bool:
        """Whether a teacher is needed at all."""
        return self.train_views or self.eval_images or self.texts


@dataclass(frozen=True)
class Preprocessing:
    """The student's input size and normalization."""

    input_size: int
    mean: Sequence[float]
    std: Sequence[float]

    @classmethod
    def of(cls, config: ExperimentConfig) -> Preprocessing:
        """From the backbone's pretraining config (``--student-size`` overrides the size)."""
        cfg = config.student.data_config()
        return cls(config.student_size or cfg["input_size"], cfg["mean"], cfg["std"])


@dataclass
class TargetData:
    """What every algorithm of one held-out domain shares."""

    target: str
    sources: list[str]
    classes: list[str]
    class_text: torch.Tensor  # (C, d); (C, 0) without a teacher (ERM never reads it)
    logit_scale: float
    fingerprint: str | None  # the teacher's; None without one
    teacher_size: int  # the size the view bank renders at (the student's without a teacher)
    train_samples: list[Sample]
    views: int
    pair_x: torch.Tensor  # (N*K, 3, S, S) uint8 at teacher_size, row = (sample, view)
    pair_y: torch.Tensor
    pair_domain: torch.Tensor
    pair_t: torch.Tensor | None  # (N*K, d) teacher embeddings; None when nothing reads them
    evals: list[EvalSet]
    queries_sent: int = 0
    text_queries: int = 0
    sent_by_purpose: dict[str, int] = field(default_factory=dict)
    _resized: dict[int, torch.Tensor] = field(default_factory=dict)

    def pairs(self, size: int, online: OnlineTeacherViews | None = None) -> PairData:
        """Training pairs at the student's input size (one row per image when online)."""
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
        rows = slice(None) if online is None else torch.arange(0, len(self.pair_y), self.views)
        return PairData(
            x=self._resized[size][rows],
            y=self.pair_y[rows],
            domain=self.pair_domain[rows],
            t_img=self.pair_t[rows] if self.pair_t is not None else None,
            online=online,
        )

    @property
    def validation(self) -> list[EvalSet]:
        """The source domains' out-splits (training-domain validation, the ID number)."""
        return [ev for ev in self.evals if ev.split == "out"]


def _sent(teacher: Teacher | None) -> dict[str, int]:
    """Items a cached teacher has sent so far, per purpose (an uncached one does not count)."""
    return teacher.sent_by_purpose() if isinstance(teacher, CachedTeacher) else {}


def prepare_target(
    dataset: DomainFolder,
    target: str,
    teacher: Teacher | None,
    config: ExperimentConfig,
    views: int,
    needs: TeacherNeeds | None = None,
) -> TargetData:
    """Fetch (or read from the cache) the teacher's answers for one held-out domain.

    Only what ``needs`` lists is asked for; with nothing to ask (ERM alone) the teacher, if
    any, is read for its card only (its input size, so the views are the pixels a distilling
    run would see, and its fingerprint), and without one the views are rendered at the
    student's input size.

    Args:
        dataset: the data.
        target: held-out domain.
        teacher: the teacher (a ``CachedTeacher`` pays only for what is not cached), or None
            when ``needs`` asks for nothing.
        config: the experiment.
        views: K views per training image.
        needs: what to fetch (default: everything the config's algorithms read).
    """
    needs = needs or TeacherNeeds.of(config.algorithms)
    if needs.any and teacher is None:
        raise ValueError(f"{', '.join(config.algorithms)} need a teacher")
    plan = build_plan(
        dataset,
        target,
        views=views,
        prompts=config.prompts,
        zeroshot=needs.eval_images,
        train_views=needs.train_views,
        holdout_fraction=config.holdout_fraction,
        split_seed=config.split_seed,
        view_seed=config.view_seed,
    )
    sent0 = _sent(teacher)
    emb = fetch_plan(plan, teacher, progress=config.progress) if needs.any and teacher else None
    sent = {k: v - sent0.get(k, 0) for k, v in _sent(teacher).items() if v - sent0.get(k, 0)}
    size = teacher.card.image_size if teacher is not None else Preprocessing.of(config).input_size
    bank = plan.view_bank(size)
    splits = plan.splits
    xs, ys, ds, ts = [], [], [], []
    domain_index = {d: i for i, d in enumerate(splits.source_domains)}
    for s in progress_bar(
        splits.train,
        desc=f"views {target}",
        unit="img",
        enabled=config.progress,
        leave=False,
    ):
        img = load_image(s)
        for v in range(views):
            xs.append(bank.make_view(img, s.id, v))
            ys.append(s.label)
            ds.append(domain_index[s.domain])
            if emb is not None and emb.train:
                ts.append(emb.train[(s.id, v)])
    evals = [
        EvalSet(d, "out", [s for s in splits.val if s.domain == d]) for d in splits.source_domains
    ]
    evals.append(EvalSet(target, "in", splits.test))
    if emb is not None and emb.eval:
        for ev in evals:
            ev.t_img = torch.from_numpy(np.stack([emb.eval[s.id] for s in ev.samples]))
    class_text = (
        torch.from_numpy(np.asarray(emb.class_texts))
        if emb is not None and emb.class_texts is not None
        else torch.zeros((len(dataset.classes), 0))
    )
    return TargetData(
        target=target,
        sources=list(splits.source_domains),
        classes=list(dataset.classes),
        class_text=class_text,
        logit_scale=float(teacher.card.logit_scale) if teacher is not None else 100.0,
        fingerprint=teacher.card.fingerprint if teacher is not None else None,
        teacher_size=size,
        train_samples=list(splits.train),
        views=views,
        pair_x=to_tensor_batch(xs, size),
        pair_y=torch.tensor(ys),
        pair_domain=torch.tensor(ds),
        pair_t=torch.from_numpy(np.stack(ts)) if ts else None,
        evals=evals,
        queries_sent=sum(sent.values()),
        text_queries=len(plan.text_queries),
        sent_by_purpose=sent,
    )


def fetch_line(data: TargetData) -> str:
    """What fetching one held-out domain's data sent, by purpose, in words."""
    if not data.queries_sent:
        return "teacher: 0 new queries (everything needed was cached)"
    n, k = len(data.train_samples), data.views
    words = {
        TRAIN_VIEWS: lambda q: f"{q} training views ({n} images x {k} views)",
        EVAL_IMAGES: lambda q: f"{q} evaluation images (the zero-shot reference)",
        CLASS_TEXTS: lambda q: f"{q} class texts",
    }
    order = [*words, *sorted(set(data.sent_by_purpose) - set(words))]
    parts = [
        words.get(purpose, lambda q, p=purpose: f"{q} {p}")(data.sent_by_purpose[purpose])
        for purpose in order
        if data.sent_by_purpose.get(purpose)
    ]
    return f"teacher: {data.queries_sent} new queries sent: " + ", ".join(parts)


class OnlineTeacherViews:
    """``--views online``: a fresh random view of every training row at every step.

    View indices are never reused within a run, so every view is a new paid query (the
    reference code's behaviour); ``queries`` counts them.
    """

    def __init__(self, data: TargetData, teacher: Teacher, *, seed: int, student_size: int) -> None:
        self.samples = data.train_samples
        self.teacher = teacher
        self.bank = ViewBank(2**62, size=data.teacher_size, seed=1_000_003 * (seed + 1))
        self.student_size = student_size
        self.images: dict[int, Image.Image] = {}
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


def _loop_record(loop: TrainConfig) -> dict[str, Any]:
    return {k: v for k, v in asdict(loop).items() if k != "progress"}


def _config_hash(config: ExperimentConfig, data: TargetData, name: str) -> str:
    """Short hash of everything a trained checkpoint depends on (stale runs are not reused).

    Its inputs are the ones earlier versions hashed, so a rerun with the same settings finds
    what they trained.
    """
    blob = json.dumps(
        {
            "algorithm": name,
            "hp": asdict(config.hp),
            "loop": _loop_record(config.loop),
            "backbone": config.student.describe(),
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


@dataclass
class _Trained:
    """What training one algorithm left behind (nothing for zero-shot)."""

    result: TrainResult | None = None
    online: OnlineTeacherViews | None = None


def _queries_used(cls: type[Algorithm], data: TargetData, online: OnlineTeacherViews | None) -> int:
    """Teacher queries the run consumes (what it would cost with an empty cache)."""
    if not cls.has_student:  # the teacher's embeddings of the evaluation images, and the texts
        return sum(len(ev.samples) for ev in data.evals) + data.text_queries
    if not cls.needs_teacher_images:
        return 0
    views = online.queries if online else len(data.train_samples) * data.views
    return views + data.text_queries


def run_one(
    name: str,
    data: TargetData,
    config: ExperimentConfig,
    seed: int,
    view_label: ViewSetting,
    teacher: Teacher | None,
    *,
    dataset_name: str,
    preprocessing: Preprocessing,
    white_box: WhiteBoxTeacher | None = None,
) -> RunRecord:
    """Train and evaluate one (algorithm, seed) on one held-out domain; returns its record."""
    cls = ALGORITHMS[name]
    ctx = BuildContext(
        classes=data.classes,
        class_text=data.class_text,
        logit_scale=data.logit_scale,
        student=config.student,
        prompts=config.prompts,
        teacher_fingerprint=data.fingerprint,
        pretrained=config.pretrained,
        input_size=preprocessing.input_size,
        mean=preprocessing.mean,
        std=preprocessing.std,
        white_box=white_box,
    )
    torch.manual_seed(seed)
    algorithm = cls.build(ctx, config.hp)
    # The student's own input size (SD keeps the teacher's).
    size = algorithm.student.input_size if algorithm.student is not None else ctx.input_size
    workdir = (
        config.out_dir
        / "checkpoints"
        / data.target
        / f"{name}-K{view_label}-s{seed}-{_config_hash(config, data, name)}"
    )
    t0 = time.perf_counter()
    trained = _Trained()
    if cls.stages:
        if view_label == ONLINE and cls.needs_teacher_images:
            assert teacher is not None  # TeacherNeeds asked for one
            trained.online = OnlineTeacherViews(data, teacher, seed=seed, student_size=size)
        # The run's seed drives the batch order as well as the initialization: with one
        # sampler seed for every run, a student without random init (sd) trained identically.
        trained.result = train(
            algorithm,
            data.pairs(size, online=trained.online),
            replace(config.loop, seed=seed),
            workdir,
            eval_fn=lambda a: mean_accuracy(a, data.validation, size),
            desc=f"{name} {data.target} s{seed}",
        )
    per_domain = {ev.domain: accuracy(algorithm, ev, size) for ev in data.evals}
    result = trained.result
    return RunRecord(
        dataset=dataset_name,
        target=data.target,
        algorithm=name,
        seed=seed,
        views=view_label,
        id_acc=float(np.mean([per_domain[d] for d in data.sources])),
        ood_acc=per_domain[data.target],
        per_domain=per_domain,
        queries_used=int(_queries_used(cls, data, trained.online)),
        online_queries=int(trained.online.queries) if trained.online else 0,
        n_train_images=len(data.train_samples),
        stage_seconds=result.stage_seconds if result else {},
        best_val=result.best_val if result else {},
        resumed_from=result.resumed_from if result else {},
        reused_stages=result.reused_stages if result else [],
        seconds=time.perf_counter() - t0,
        checkpoint=str(stage_path(workdir, cls.stages[-1])) if cls.stages else None,
        hp=asdict(config.hp),
        loop={**_loop_record(config.loop), "seed": seed},
        student=cls.describe_student(ctx),
        teacher={"id": teacher.card.id, "fingerprint": data.fingerprint} if teacher else {},
        time=time.time(),
    )


def run_experiment(
    dataset: DomainFolder,
    targets: Sequence[str],
    teacher: Teacher | None,
    config: ExperimentConfig,
    *,
    dataset_name: str = "",
    white_box: WhiteBoxTeacher | None = None,
    log: Callable[[str], None] = print,
) -> list[RunRecord]:
    """Leave-one-domain-out over ``targets`` for every view setting, algorithm and seed.

    Every record is appended to ``<out_dir>/results.jsonl`` as soon as it exists, so an
    interrupted experiment keeps its finished runs (and their checkpoints are reused).

    Args:
        dataset: the data.
        targets: held-out domains.
        teacher: the teacher (a ``CachedTeacher`` pays only for what is not cached); None
            when no chosen algorithm reads it (``TeacherNeeds``).
        config: the experiment.
        dataset_name: recorded as each record's ``dataset``.
        white_box: the teacher's image tower, for white-box algorithms (``sd``).
        log: where progress lines go.

    Raises:
        ValueError: a white-box algorithm without ``white_box``, or no teacher for algorithms
            that read one.
    """
    classes = [ALGORITHMS[name] for name in config.algorithms]
    if white_box is None and any(cls.white_box for cls in classes):
        raise ValueError("a white-box algorithm (sd) needs the teacher's image tower")
    needs = TeacherNeeds.of(config.algorithms)
    if needs.any and teacher is None:
        raise ValueError(f"{', '.join(config.algorithms)} need a teacher")
    config.out_dir.mkdir(parents=True, exist_ok=True)
    results_path = config.out_dir / "results.jsonl"
    preprocessing = Preprocessing.of(config)
    records = []
    for target in targets:
        for view_label in config.views:
            # Online runs still fetch view 0 (plus texts and eval images) for the shared data.
            k = 1 if view_label == ONLINE else int(view_label)
            data = prepare_target(dataset, target, teacher, config, k, needs)
            if needs.any:
                log(f"[{target} K={view_label}] {fetch_line(data)}")
            for seed in config.seeds:
                for name in config.algorithms:
                    if view_label == ONLINE and not ALGORITHMS[name].needs_teacher_images:
                        continue  # erm / zero-shot do not depend on the views
                    record = run_one(
                        name,
                        data,
                        config,
                        seed,
                        view_label,
                        teacher,
                        dataset_name=dataset_name,
                        preprocessing=preprocessing,
                        white_box=white_box,
                    )
                    record.queries_sent_fetch = data.queries_sent
                    append_record(results_path, record)
                    records.append(record)
                    log(
                        f"[{target} K={view_label} seed={seed}] {name:8s} "
                        f"ID {100 * record.id_acc:5.1f}  OOD {100 * record.ood_acc:5.1f}"
                        f"  queries {record.queries_used}  ({record.seconds:.0f}s)"
                    )
    return records
