"""Helpers the commands share: exit codes, user errors, and turning options into things."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from torch import nn

from client_distiller.algorithms import WhiteBoxTeacher
from client_distiller.commands import demo
from client_distiller.commands.options import (
    DatasetOptions,
    PlanOptions,
    ProgressOptions,
    SplitOptions,
    TeacherOptions,
    ZeroshotOptions,
)
from client_distiller.data import DatasetError, DomainFolder
from client_distiller.plan import Plan, build_plan
from client_distiller.progress import on_terminal
from client_distiller.teacher import BudgetExhausted, CachedTeacher, LocalTeacher, open_teacher

#: Exit codes: 0 done; 1 error (bad input, vendor failure); 2 bad command line (unknown flag,
#: a value of the wrong type); 3 the vendor's budget ran out (402); 4 the client's
#: --max-queries cap stopped the run.
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_BUDGET, EXIT_CAP = 0, 1, 2, 3, 4


class UserError(Exception):
    """A mistake in the command line or the environment: printed without a traceback."""


def dataset_root(options: DatasetOptions, *, progress: bool = True) -> Path:
    """The folder ``--data`` names (``demo``: the demo benchmark, generated on first use)."""
    if options.data == demo.DEMO:
        # The generator's bar is a live one: only on a terminal.
        return demo.benchmark_folder(options.data_dir, progress=progress and on_terminal())
    return Path(options.data)


def open_dataset(options: DatasetOptions, *, progress: bool = False) -> DomainFolder:
    """Open ``--data``: one warning line per unreadable image, then their count."""
    dataset = DomainFolder(dataset_root(options, progress=progress), verify=True, progress=progress)
    for skipped in dataset.skipped:
        print(
            f"warning: skipped unreadable image {skipped.path} ({skipped.reason})", file=sys.stderr
        )
    if dataset.skipped:
        print(
            f"warning: {len(dataset.skipped)} unreadable image(s) skipped; "
            f"{len(dataset.samples)} images used",
            file=sys.stderr,
        )
    return dataset


def check_domain(dataset: DomainFolder, domain: str | None, *, hint: str = "") -> str:
    """``--target-domain``, checked against the dataset's domains."""
    if domain is None:
        raise UserError(f"--target-domain is required{hint}; domains: {', '.join(dataset.domains)}")
    if domain not in dataset.domains:
        raise UserError(
            f"--target-domain {domain!r} is not a domain of {dataset.root}; "
            f"domains: {', '.join(dataset.domains)}"
        )
    return domain


class PlanCommand(SplitOptions, PlanOptions, ZeroshotOptions, ProgressOptions):
    """What ``estimate`` and ``fetch`` share: the data and the plan of one held-out domain."""

    def plan_views(self) -> int:
        """The view count K of the plan (the largest, when several are given: view k of an
        image is the same query whatever K is, so it covers the smaller ones)."""
        counts = [v for v in self.views if isinstance(v, int)]
        if not counts:
            raise UserError(
                "--views online draws its views while training (`run`); give a view count"
            )
        return max(counts)

    def dataset_and_plan(self) -> tuple[DomainFolder, Plan]:
        """Open the data, check the target domain, list the plan."""
        dataset = open_dataset(self, progress=self.progress)
        target = check_domain(dataset, self.target_domain)
        try:
            plan = build_plan(
                dataset,
                target,
                views=self.plan_views(),
                prompts=self.prompts,
                zeroshot=self.zeroshot,
                holdout_fraction=self.holdout_fraction,
                split_seed=self.split_seed,
                view_seed=self.view_seed,
            )
        except DatasetError as exc:
            raise UserError(str(exc)) from exc
        return dataset, plan


@contextlib.contextmanager
def teacher_from(
    options: TeacherOptions, *, stage: str, max_queries: int | None = None
) -> Iterator[CachedTeacher]:
    """The cached, metered teacher the options describe (closed on exit)."""
    with open_teacher(
        endpoint=options.endpoint,
        api=options.api,
        model=options.model,
        card=options.card_facts(),
        api_key=options.api_key,
        cache_dir=options.cache_dir,
        local_model=options.local_teacher,
        local_pretrained=options.local_pretrained,
        clip_config_dirs=options.clip_config_dirs,
        max_queries=max_queries,
        stage=stage,
        concurrency=options.concurrency,
    ) as teacher:
        yield teacher


def spend_summary(teacher: CachedTeacher) -> str:
    """What this command's teacher sent, was charged and found cached, and the budget left."""
    stats = teacher.stats()
    if not teacher.metered:
        return (
            f"computed {stats.sent} queries locally (nothing paid), {stats.cache_hits} cache hits"
        )
    return (
        f"sent {stats.sent} queries (vendor charged {stats.charged}), "
        f"{stats.cache_hits} cache hits"
        + (
            ""
            if stats.budget_remaining is None
            else f", vendor budget remaining {stats.budget_remaining}"
        )
    )


def budget_refusal(teacher: CachedTeacher, exc: BudgetExhausted) -> str:
    """The message of a run stopped by the vendor's budget: the figures as they are now (the
    refusal's own, not an earlier request's) and how to go on."""
    remaining = exc.remaining if exc.remaining is not None else teacher.stats().budget_remaining
    needed = f"; at least {exc.needed} more are needed" if exc.needed else ""
    return (
        f"error: vendor budget exhausted for this key: {remaining} queries remain{needed}."
        f"\nEverything fetched so far is cached; {spend_summary(teacher)}.\n"
        f"Top up the key (vendor-service keys topup, or ask the vendor) and rerun the same "
        f"command: nothing already paid is paid again."
    )


def white_box(teacher: CachedTeacher) -> WhiteBoxTeacher | None:
    """The teacher's image tower when it runs in process (``--local-teacher``), else None."""
    inner = teacher.inner
    if not isinstance(inner, LocalTeacher):
        return None
    card = teacher.card
    visual = inner.model.visual
    assert isinstance(visual, nn.Module)
    return WhiteBoxTeacher(
        visual=visual,
        name=card.id,
        image_size=card.image_size,
        mean=card.image_mean,
        std=card.image_std,
    )


def print_table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], *, file: IO[str] | None = None
) -> None:
    """A plain aligned text table (numbers right-aligned)."""
    out = file if file is not None else sys.stdout
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [
        bool(rows) and all(isinstance(r[i], (int, float)) for r in rows)
        for i in range(len(headers))
    ]
    for j, r in enumerate(cells):
        line = "  ".join(
            c.rjust(w) if numeric[i] else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=False))
        )
        print(line.rstrip(), file=out)
        if j == 0:
            print("  ".join("-" * w for w in widths), file=out)


def _fmt(c: Any) -> str:
    if isinstance(c, float):
        return f"{c:,.4f}".rstrip("0").rstrip(".") if c else "0"
    if c is None:
        return "-"
    return str(c)
