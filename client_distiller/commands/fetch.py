"""Fetch a plan's teacher embeddings into the cache (resumable, capped, budget-aware)."""

from __future__ import annotations

import sys

from pydantic import Field

from client_distiller.commands.common import (
    EXIT_BUDGET,
    EXIT_CAP,
    EXIT_OK,
    PlanCommand,
    teacher_from,
)
from client_distiller.commands.options import CapOptions, ProgressOptions, TeacherOptions
from client_distiller.plan import fetch_plan
from client_distiller.teacher import BudgetExhausted, CachedTeacher, QueryCapReached


def _summary(teacher: CachedTeacher) -> str:
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


class Fetch(PlanCommand, TeacherOptions, CapOptions, ProgressOptions):
    """Fetch a plan's teacher embeddings into the cache (resumable, capped, budget-aware)."""

    batch_size: int = Field(
        256, ge=1, description="images rendered per step (requests are cut to the vendor's max)"
    )

    def run(self) -> int:
        """Fetch everything the plan needs; only cache misses are paid for."""
        _, plan = self.dataset_and_plan()
        with teacher_from(self, stage="fetch", max_queries=self.max_queries) as teacher:
            count = plan.count()
            print(
                f"plan: {count.images} image + {count.texts} text queries "
                f"(target {plan.splits.target_domain}, K={plan.views})",
                flush=True,
            )
            try:
                fetch_plan(plan, teacher, progress=self.progress, batch_size=self.batch_size)
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
                    f"stopped: --max-queries {teacher.max_queries} reached. Everything fetched "
                    f"so far is cached; {_summary(teacher)}.\nRerun with a higher cap to continue.",
                    file=sys.stderr,
                )
                return EXIT_CAP
            print(f"done: {_summary(teacher)}")
        return EXIT_OK
