"""Fetch a plan's teacher embeddings into the cache (resumable, capped, budget-aware)."""

from __future__ import annotations

import sys

from pydantic import Field

from client_distiller.commands.common import (
    EXIT_BUDGET,
    EXIT_CAP,
    EXIT_OK,
    PlanCommand,
    budget_refusal,
    spend_summary,
    teacher_from,
)
from client_distiller.commands.options import CapOptions, TeacherOptions
from client_distiller.plan import fetch_plan
from client_distiller.teacher import BudgetExhausted, QueryCapReached


class Fetch(PlanCommand, TeacherOptions, CapOptions):
    """Fetch a plan's teacher embeddings into the cache (resumable, capped, budget-aware)."""

    # Not --batch-size: that is `run`'s images per source domain per training step.
    render_batch: int = Field(
        256,
        ge=1,
        description="images rendered (decoded, augmented, encoded) per step of the fetch; "
        "requests are cut to the vendor's max items either way",
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
                fetch_plan(plan, teacher, progress=self.progress, batch_size=self.render_batch)
            except BudgetExhausted as exc:
                print(budget_refusal(teacher, exc), file=sys.stderr)
                return EXIT_BUDGET
            except QueryCapReached:
                print(
                    f"stopped: --max-queries {teacher.max_queries} reached. Everything fetched "
                    f"so far is cached; {spend_summary(teacher)}.\nRerun with a higher cap to "
                    f"continue.",
                    file=sys.stderr,
                )
                return EXIT_CAP
            print(f"done: {spend_summary(teacher)}")
        return EXIT_OK
