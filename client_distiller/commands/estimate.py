"""Print what a plan costs (queries to send, already cached, price); spends nothing."""

from __future__ import annotations

from collections.abc import Sequence

from client_distiller.commands.common import EXIT_OK, PlanCommand, print_table, teacher_from
from client_distiller.commands.options import TeacherOptions
from client_distiller.plan import CLASS_TEXTS, iter_image_batches
from client_distiller.teacher import CachedTeacher
from client_distiller.teacher.wire import encode_image
from shared_schemas import IMAGES, TEXTS, EmbeddingEndpoint


class _Tally:
    """Queries listed, distinct, cached and to send, per purpose and per endpoint."""

    def __init__(self, teacher: CachedTeacher) -> None:
        self.teacher = teacher
        self.seen: dict[EmbeddingEndpoint, set[str]] = {IMAGES: set(), TEXTS: set()}
        self.totals: dict[EmbeddingEndpoint, list[int]] = {IMAGES: [0] * 4, TEXTS: [0] * 4}
        self.per_purpose: dict[str, list[int]] = {}

    def add(
        self, endpoint: EmbeddingEndpoint, purpose: str, payloads: Sequence[bytes] | Sequence[str]
    ) -> None:
        keys = self.teacher.keys_for(endpoint, payloads)
        new = [k for k in dict.fromkeys(keys) if k not in self.seen[endpoint]]
        self.seen[endpoint].update(new)
        cached = sum(1 for k in new if self.teacher.is_cached(k))
        row = self.per_purpose.setdefault(purpose, [0] * 4)
        for acc in (row, self.totals[endpoint]):
            acc[0] += len(keys)
            acc[1] += len(new)
            acc[2] += cached
            acc[3] += len(new) - cached


class Estimate(PlanCommand, TeacherOptions):
    """Print what a plan costs (queries to send, already cached, price); spends nothing."""

    def run(self) -> int:
        """Count the plan's queries, look each one up in the cache, price the misses."""
        dataset, plan = self.dataset_and_plan()
        with teacher_from(self, stage="estimate") as teacher:
            card = teacher.card  # vendor calls: GET /v1/models and GET /v1/usage, both free
            usage = teacher.usage()
            remaining = usage.budget.remaining if usage is not None else None
            tally = _Tally(teacher)
            tally.add(TEXTS, CLASS_TEXTS, [q.text for q in plan.text_queries])
            for purpose, _, images in iter_image_batches(plan, card.image_size):
                tally.add(IMAGES, purpose, [encode_image(im, card.image_size) for im in images])

        price = {IMAGES: card.price_per_image_query, TEXTS: card.price_per_text_query}
        print(
            f"teacher: {card.id} (fingerprint {card.fingerprint[:12]}), image size "
            f"{card.image_size}, {card.price_per_image_query:g} {card.currency}/image, "
            f"{card.price_per_text_query:g} {card.currency}/text"
        )
        s = plan.splits
        print(
            f"data: {dataset.root} | target {s.target_domain} | sources "
            f"{', '.join(s.source_domains)} | {len(s.train)} train, {len(s.val)} val, "
            f"{len(s.test)} test images | {len(dataset.classes)} classes | K={plan.views} views "
            f"| {len(plan.prompts)} prompt(s)"
        )
        rows: list[list[object]] = []
        for purpose, (listed, distinct, cached, to_send) in tally.per_purpose.items():
            endpoint = TEXTS if purpose == CLASS_TEXTS else IMAGES
            rows.append(
                [purpose, endpoint, listed, distinct, cached, to_send, to_send * price[endpoint]]
            )
        totals = tally.totals
        cost = sum(to_send * price[e] for e, (_, _, _, to_send) in totals.items())
        all_listed, all_distinct, all_cached, all_send = (
            sum(t[i] for t in totals.values()) for i in range(4)
        )
        rows.append(["total", "", all_listed, all_distinct, all_cached, all_send, cost])
        print_table(
            [
                "purpose",
                "endpoint",
                "queries",
                "distinct",
                "cached",
                "to send",
                f"cost {card.currency}",
            ],
            rows,
        )
        print(
            f"image queries to send: {totals[IMAGES][3]}, text queries to send: "
            f"{totals[TEXTS][3]}, estimated cost: {cost:.4f} {card.currency}"
        )
        if remaining is not None:
            verdict = (
                "enough"
                if remaining >= all_send
                else f"NOT enough: short by {all_send - remaining}"
            )
            print(f"vendor budget remaining for this key: {remaining} ({verdict})")
        return EXIT_OK
