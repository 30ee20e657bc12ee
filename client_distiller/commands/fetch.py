"""Fetch a plan's teacher embeddings into the cache (resumable, capped, budget-aware)."""

from __future__ import annotations

import argparse
import sys

from client_distiller.commands.common import (
    EXIT_BUDGET,
    EXIT_CAP,
    EXIT_OK,
    add_data_options,
    add_plan_options,
    add_teacher_options,
    dataset_from_args,
    plan_from_args,
    teacher_from_args,
)
from client_distiller.plan import fetch_plan
from client_distiller.teacher import (
    BudgetExhausted,
    CachedTeacher,
    LocalTeacher,
    QueryCapReached,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fetch``."""
    add_data_options(parser)
    add_plan_options(parser)
    add_teacher_options(parser)
    parser.add_argument(
        "--batch-size",
        type=int,
        default=256,
        help="images rendered per step (requests are cut to the vendor's max)",
    )
    parser.add_argument(
        "--no-progress", dest="progress", action="store_false", help="no progress bar"
    )


def _summary(teacher: CachedTeacher) -> str:
    remaining = teacher.budget_remaining
    if isinstance(teacher.teacher, LocalTeacher):
        return (
            f"computed {teacher.sent} queries locally (nothing paid), "
            f"{teacher.cache_hits} cache hits"
        )
    return (
        f"sent {teacher.sent} queries (vendor charged {teacher.charged}), "
        f"{teacher.cache_hits} cache hits"
        + ("" if remaining is None else f", vendor budget remaining {remaining}")
    )


def run(args: argparse.Namespace) -> int:
    """Fetch everything the plan needs; only cache misses are paid for."""
    dataset = dataset_from_args(args)
    plan = plan_from_args(args, dataset)
    with teacher_from_args(args, stage="fetch") as teacher:
        count = plan.count()
        print(
            f"plan: {count.images} image + {count.texts} text queries "
            f"(target {plan.splits.target_domain}, K={plan.views})",
            flush=True,
        )
        try:
            fetch_plan(plan, teacher, progress=args.progress, batch_size=args.batch_size)
        except BudgetExhausted as exc:
            print(
                f"error: the vendor refused the next request: budget exhausted ({exc}).\n"
                f"Everything fetched so far is cached; {_summary(teacher)}.\n"
                f"Top up the key and rerun the same command to continue.",
                file=sys.stderr,
            )
            return EXIT_BUDGET
        except QueryCapReached:
            print(
                f"stopped: --max-queries {teacher.max_queries} reached. Everything fetched so "
                f"far is cached; {_summary(teacher)}.\nRerun with a higher cap to continue.",
                file=sys.stderr,
            )
            return EXIT_CAP
        print(f"done: {_summary(teacher)}")
    return EXIT_OK
