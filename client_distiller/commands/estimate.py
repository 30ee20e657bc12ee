"""Print what a plan costs (queries to send, already cached, price); spends nothing."""

from __future__ import annotations

import argparse

from client_distiller.commands.common import (
    EXIT_OK,
    add_data_options,
    add_plan_options,
    add_teacher_options,
    dataset_from_args,
    plan_from_args,
    print_table,
    teacher_from_args,
)
from client_distiller.plan import CLASS_TEXTS, iter_image_batches
from client_distiller.teacher.wire import encode_image
from shared_schemas import IMAGES, TEXTS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``estimate``."""
    add_data_options(parser)
    add_plan_options(parser)
    add_teacher_options(parser, cap=False)


def run(args: argparse.Namespace) -> int:
    """Count the plan's queries, look each one up in the cache, price the misses."""
    dataset = dataset_from_args(args)
    plan = plan_from_args(args, dataset)
    with teacher_from_args(args, stage="estimate") as teacher:
        card = teacher.card  # vendor calls: GET /v1/models and GET /v1/usage, both free
        remaining = None
        usage = getattr(teacher.teacher, "usage", None)
        if usage is not None:
            remaining = usage().budget.remaining
        rows = []
        totals = {IMAGES: [0, 0, 0, 0], TEXTS: [0, 0, 0, 0]}
        seen: dict[str, set[str]] = {IMAGES: set(), TEXTS: set()}
        per_purpose: dict[str, list[int]] = {}

        def account(endpoint: str, purpose: str, payloads) -> None:
            keys = teacher.keys_for(endpoint, payloads)
            new = [k for k in dict.fromkeys(keys) if k not in seen[endpoint]]
            seen[endpoint].update(new)
            cached = sum(1 for k in new if teacher.cache.contains(k))
            row = per_purpose.setdefault(purpose, [0, 0, 0, 0])
            for acc in (row, totals[endpoint]):
                acc[0] += len(keys)
                acc[1] += len(new)
                acc[2] += cached
                acc[3] += len(new) - cached

        account(TEXTS, CLASS_TEXTS, [q.text for q in plan.text_queries])
        for purpose, _, images in iter_image_batches(plan, card.image_size):
            account(IMAGES, purpose, [encode_image(im, card.image_size) for im in images])

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
        f"{len(s.test)} test images | {len(dataset.classes)} classes | K={plan.views} views | "
        f"{len(plan.prompts)} prompt(s)"
    )
    for purpose, (listed, distinct, cached, to_send) in per_purpose.items():
        endpoint = TEXTS if purpose == CLASS_TEXTS else IMAGES
        rows.append(
            [purpose, endpoint, listed, distinct, cached, to_send, to_send * price[endpoint]]
        )
    cost = 0.0
    for endpoint, (_listed, _distinct, _cached, to_send) in totals.items():
        cost += to_send * price[endpoint]
    all_listed = sum(t[0] for t in totals.values())
    all_distinct = sum(t[1] for t in totals.values())
    all_cached = sum(t[2] for t in totals.values())
    all_send = sum(t[3] for t in totals.values())
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
            "enough" if remaining >= all_send else f"NOT enough: short by {all_send - remaining}"
        )
        print(f"vendor budget remaining for this key: {remaining} ({verdict})")
    return EXIT_OK
