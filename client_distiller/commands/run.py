"""Run leave-one-domain-out experiments: fetch, train (erm/kd/adip/sd), evaluate, report.

Teacher embeddings come from the cache where possible (a rerun spends zero queries) and
finished runs reuse their checkpoints. Results go to OUT/results.jsonl, OUT/tables.md and
OUT/*.png.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from pydantic import Field, field_validator, model_validator
from typing_extensions import Self

from client_distiller.algorithms import ALGORITHMS, HParams
from client_distiller.commands import demo
from client_distiller.commands.common import (
    EXIT_BUDGET,
    EXIT_OK,
    UserError,
    budget_refusal,
    open_dataset,
    teacher_from,
    white_box,
)
from client_distiller.commands.options import (
    CapOptions,
    PlanOptions,
    ProgressOptions,
    SplitOptions,
    TeacherOptions,
    ZeroshotOptions,
)
from client_distiller.experiment import ExperimentConfig, TeacherNeeds, run_experiment
from client_distiller.models.student import TimmBackbone
from client_distiller.results import (
    RunRecord,
    ViewSetting,
    error_bars,
    load_records,
    markdown_table,
    write_report,
)
from client_distiller.teacher import BudgetExhausted, CachedTeacher
from client_distiller.train import TrainConfig

#: The most torch threads ``run`` takes by default.
MAX_DEFAULT_THREADS = 8


def default_threads() -> int:
    """Half the CPU cores this process may use, at least 1 and at most ``MAX_DEFAULT_THREADS``.

    The students are small (a mobilenet at 64 px, batches of a few dozen images): each op is too
    little work to split, and extra threads mostly wait on each other, worst when another job
    shares the cores. Measured on a 2-core machine busy with other jobs, one training step of
    the demo student (48 images) took 2.0 s of wall time with 1 thread and 9.4 to 12.8 s with
    2; `run` with torch's default (every core) was about 5x slower than ``--threads 1``. Half
    the cores leaves the rest to the OS, the image rendering and whatever else runs.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(MAX_DEFAULT_THREADS, cores // 2))


class Run(SplitOptions, PlanOptions, TeacherOptions, CapOptions, ProgressOptions, ZeroshotOptions):
    """Run leave-one-domain-out experiments: fetch, train (erm/kd/adip/sd), evaluate, report.

    --target-domain takes a domain, a comma list or 'all'. The teacher is asked only for what
    the chosen algorithms read: erm alone needs no teacher at all, and --no-zeroshot (or
    leaving zeroshot out of --algorithms) skips the evaluation images.
    """

    algorithms: list[str] = Field(
        ["erm", "kd", "adip", "zeroshot"], description=f"comma list of {','.join(ALGORITHMS)}"
    )
    seeds: list[int] = Field([0], description="comma list of seeds")
    out: Path = Field(Path("runs/experiment"), description="results, checkpoints and plots")
    # -- student
    student: str = Field(
        demo.DEMO,
        description="timm architecture of the student, or 'demo' (the demo world's "
        "photo-pretrained student)",
    )
    student_weights: Path | None = Field(
        None, description="weights file for the demo student (default: the shipped one)"
    )
    student_size: int | None = Field(
        None, ge=1, description="student input size (default: the backbone's pretraining size)"
    )
    pretrained: bool = Field(
        True,
        description="start the student from its backbone's pretrained weights "
        "(--no-pretrained: random init)",
    )
    # -- training
    steps: int = Field(300, ge=1, description="steps per training stage (Distill, ERM, KD, SD)")
    align_steps: int = Field(300, ge=1, description="Align steps")
    batch_size: int = Field(32, ge=1, description="images per source domain per step")
    lr: float = Field(1e-3, gt=0, description="Adam learning rate")
    align_lr: float = Field(1e-3, gt=0, description="Adam learning rate of the Align stage")
    weight_decay: float = Field(0.0, ge=0, description="Adam weight decay")
    lam: float = Field(
        0.5, ge=0, le=1, description="ADiP/SD weight of the image term (1 - lam: text term)"
    )
    kd_temperature: float = Field(
        4.0,
        gt=0,
        description="KD temperature, quoted at CLIP's logit scale of 100: the teacher's soft "
        "targets are softmax(100 cos / T) whatever its own scale",
    )
    train_bn: bool = Field(
        False,
        description="update BatchNorm statistics while training (default: frozen at the "
        "pretrained values in every stage of every algorithm, as the method's reference code "
        "does)",
    )
    kd_alpha: float = Field(1.0, ge=0, description="KD weight of the KL term")
    eval_every: int = Field(
        0,
        ge=0,
        description="training-domain validation every N steps, keeping the best checkpoint "
        "(0: off, keep the last)",
    )
    swa: bool = Field(
        False, description="average the weights over the second half of each stage (SWA)"
    )
    checkpoint_every: int = Field(50, ge=0, description="resume checkpoint every N steps")
    threads: int = Field(
        default_threads(),  # this machine's, so --help shows the number
        ge=1,
        description="torch CPU threads; the default is half the CPU cores, 1 to "
        f"{MAX_DEFAULT_THREADS} (small students get slower with more)",
    )
    report_only: bool = Field(
        False,
        description="only rebuild OUT/tables.md and the plots from OUT/results.jsonl (every "
        "run recorded there; no teacher, no training)",
    )

    @field_validator("algorithms")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = [a for a in value if a not in ALGORITHMS]
        if unknown:
            raise ValueError(
                f"unknown algorithm(s) {', '.join(unknown)}; choose from {', '.join(ALGORITHMS)}"
            )
        if not value:
            raise ValueError("give at least one algorithm")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if not self.zeroshot:
            self.algorithms = [a for a in self.algorithms if a != "zeroshot"]
            if not self.algorithms:
                raise ValueError("--no-zeroshot leaves no algorithm to run")
        white = [a for a in self.algorithms if ALGORITHMS[a].white_box]
        if white and not self.local_teacher:
            raise ValueError(
                f"{', '.join(white)} is white-box: it needs --local-teacher (the teacher's weights)"
            )
        if self.student_weights is not None and self.student != demo.DEMO:
            raise ValueError("--student-weights applies to the demo student only")
        return self

    def experiment(self) -> ExperimentConfig:
        """The experiment these options describe."""
        backbone = (
            demo.student(self.student_weights)
            if self.student == demo.DEMO
            else TimmBackbone(self.student)
        )
        return ExperimentConfig(
            algorithms=list(self.algorithms),
            seeds=list(self.seeds),
            views=list(self.views),
            out_dir=self.out,
            student=backbone,
            hp=HParams(
                lr=self.lr,
                align_lr=self.align_lr,
                weight_decay=self.weight_decay,
                lam=self.lam,
                kd_temperature=self.kd_temperature,
                kd_alpha=self.kd_alpha,
                freeze_bn=not self.train_bn,
            ),
            loop=TrainConfig(
                steps=self.steps,
                align_steps=self.align_steps,
                batch_size=self.batch_size,
                eval_every=self.eval_every,
                swa=self.swa,
                checkpoint_every=self.checkpoint_every,
                progress=self.progress,
            ),
            pretrained=self.pretrained,
            student_size=self.student_size,
            prompts=list(self.prompts),
            holdout_fraction=self.holdout_fraction,
            split_seed=self.split_seed,
            view_seed=self.view_seed,
            progress=self.progress,
        )

    def run(self) -> int:
        """Fetch what is missing, train every (target, views, seed, algorithm), print tables."""
        torch.set_flush_denormal(True)
        torch.set_num_threads(self.threads)
        config = self.experiment()
        results_path = config.out_dir / "results.jsonl"
        if self.report_only:
            if not results_path.is_file():
                raise UserError(f"no results yet: {results_path}")
            records = load_records(results_path)
            paths = write_report(records, config.out_dir)
            _print_tables(records, sorted({str(r.views) for r in records}))
            print(f"\ntables: {paths['tables']}; plots: {paths['per_domain']}, {paths['queries']}")
            return EXIT_OK
        dataset = open_dataset(self, progress=self.progress)
        if not self.target_domain:
            raise UserError(
                f"--target-domain is required (a domain, a comma list or 'all'); "
                f"domains: {', '.join(dataset.domains)}"
            )
        targets = (
            dataset.domains
            if self.target_domain == "all"
            else [t.strip() for t in self.target_domain.split(",") if t.strip()]
        )
        for t in targets:
            if t not in dataset.domains:
                raise UserError(
                    f"--target-domain {t!r} is not a domain of {dataset.root}; "
                    f"domains: {', '.join(dataset.domains)}"
                )
        needs = TeacherNeeds.of(self.algorithms)
        with contextlib.ExitStack() as stack:
            teacher: CachedTeacher | None = None
            # A teacher that no chosen algorithm reads is still used for its card, if one is
            # configured (erm's views then match a distilling run's); erm alone needs none.
            if needs.any or self.endpoint or self.local_teacher:
                teacher = stack.enter_context(
                    teacher_from(self, stage="run", max_queries=self.max_queries)
                )
            before = teacher.stats() if teacher is not None else None
            try:
                records = run_experiment(
                    dataset,
                    targets,
                    teacher,
                    config,
                    dataset_name=self.data,
                    white_box=white_box(teacher) if teacher is not None else None,
                )
            except BudgetExhausted as exc:
                assert teacher is not None
                print(budget_refusal(teacher, exc), file=sys.stderr)
                return EXIT_BUDGET
            after = teacher.stats() if teacher is not None else None
        mine = {(r.target, r.algorithm, r.seed, str(r.views)) for r in records}
        shown = [
            r
            for r in load_records(results_path)
            if (r.target, r.algorithm, r.seed, str(r.views)) in mine
        ]
        paths = write_report(shown, config.out_dir)
        _print_tables(shown, config.views)
        if before is None or after is None:
            print("\nno teacher queries: the chosen algorithms read no teacher")
        elif not needs.any:
            print("\nteacher queries sent by this run: 0 (the chosen algorithms read no answers)")
        else:
            print(
                f"\nteacher queries sent by this run: {after.sent - before.sent} (cache hits: "
                f"{after.cache_hits}"
                + (
                    ""
                    if after.budget_remaining is None
                    else f", vendor budget remaining: {after.budget_remaining}"
                )
                + ")"
            )
        print(
            f"results: {results_path}; tables: {paths['tables']}; "
            f"plots: {paths['per_domain']}, {paths['queries']}"
        )
        return EXIT_OK


def _print_tables(records: Sequence[RunRecord], views: Sequence[ViewSetting | str]) -> None:
    for v in views:
        rs = [r for r in records if str(r.views) == str(v)]
        spread = ", mean ± SE over seeds" if error_bars(rs) else " (one seed: no error bars)"
        print(f"\nviews K = {v}: OOD accuracy on the held-out domain (columns){spread}, %")
        print(markdown_table(rs, "ood_acc"))
        print(f"\nviews K = {v}: ID accuracy on the source out-splits, by held-out domain, %")
        print(markdown_table(rs, "id_acc"))
