"""What a run will ask the teacher, and fetching it.

A plan lists every teacher query a leave-one-domain-out run needs, so ``estimate`` can price it
before anything is spent and ``fetch`` can buy it in one go (``run`` then reads it all from the
cache):

- ``train-views``: K views of every source training image (the view bank);
- ``eval-images``: the plain view of every evaluation image (source out-splits and the target
  in-split), for the teacher's zero-shot reference accuracy;
- ``class-texts``: every class under every prompt template.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from client_distiller.data import (
    DatasetError,
    DomainFolder,
    Sample,
    Splits,
    ViewBank,
    class_name_to_text,
    load_image,
    make_splits,
)
from client_distiller.progress import note, progress_bar
from client_distiller.teacher import CachedTeacher, Teacher
from shared_schemas import IMAGES, TEXTS, EmbeddingEndpoint, ModelCard

DEFAULT_PROMPTS = ("a photo of a {}",)
TRAIN_VIEWS = "train-views"
EVAL_IMAGES = "eval-images"
CLASS_TEXTS = "class-texts"


@dataclass(frozen=True)
class ImageQuery:
    """One image query: view ``view`` of ``sample``."""

    sample: Sample
    view: int
    purpose: str


@dataclass(frozen=True)
class TextQuery:
    """One text query: class ``label`` under ``prompt``."""

    label: int
    prompt: str
    text: str
    purpose: str = CLASS_TEXTS


@dataclass(frozen=True)
class PlanCount:
    """Queries a plan lists (before deduplication and the cache)."""

    images: int
    texts: int

    @property
    def total(self) -> int:
        return self.images + self.texts


@dataclass
class Plan:
    """Every teacher query of one experiment, in a fixed order."""

    dataset: DomainFolder
    splits: Splits
    views: int
    prompts: list[str]
    zeroshot: bool
    view_seed: int
    image_queries: list[ImageQuery]
    text_queries: list[TextQuery]

    def count(self) -> PlanCount:
        """How many image and text queries the plan lists."""
        return PlanCount(len(self.image_queries), len(self.text_queries))

    def view_bank(self, image_size: int) -> ViewBank:
        """The plan's view bank at the teacher's input size."""
        return ViewBank(self.views, size=image_size, seed=self.view_seed)

    @property
    def eval_samples(self) -> list[Sample]:
        """Source out-splits then the target in-split."""
        return self.splits.val + self.splits.test


def build_plan(
    dataset: DomainFolder,
    target_domain: str,
    *,
    views: int,
    prompts: list[str] | tuple[str, ...] = DEFAULT_PROMPTS,
    zeroshot: bool = True,
    train_views: bool = True,
    holdout_fraction: float = 0.2,
    split_seed: int = 0,
    view_seed: int = 0,
) -> Plan:
    """List the teacher queries of a leave-``target_domain``-out run.

    Args:
        dataset: the data.
        target_domain: held-out domain.
        views: views per training image (K >= 1).
        prompts: templates with one ``{}`` for the class words.
        zeroshot: also embed every evaluation image (for the teacher's zero-shot accuracy).
        train_views: embed the K views of every training image (what distillation reads;
            ERM and the zero-shot reference alone do not).
        holdout_fraction: out-split fraction of each domain.
        split_seed: seed of the in/out permutation.
        view_seed: seed of the view bank.

    Raises:
        DatasetError: bad target domain, bad prompt, bad view count.
    """
    if views < 1:
        raise DatasetError(f"--views must be >= 1, got {views}")
    prompts = list(prompts)
    if not prompts:
        raise DatasetError("need at least one prompt template")
    for p in prompts:
        if p.count("{}") != 1:
            raise DatasetError(f"prompt {p!r} must contain exactly one '{{}}' for the class name")
    splits = make_splits(
        dataset, target_domain, holdout_fraction=holdout_fraction, split_seed=split_seed
    )
    images = (
        [ImageQuery(s, v, TRAIN_VIEWS) for s in splits.train for v in range(views)]
        if train_views
        else []
    )
    if zeroshot:
        images += [ImageQuery(s, 0, EVAL_IMAGES) for s in splits.val + splits.test]
    texts = [
        TextQuery(label, p, p.format(class_name_to_text(c)))
        for p in prompts
        for label, c in enumerate(dataset.classes)
    ]
    return Plan(dataset, splits, views, prompts, zeroshot, view_seed, images, texts)


def iter_image_batches(
    plan: Plan, image_size: int, batch_size: int = 256
) -> Iterator[tuple[str, list[ImageQuery], list[Image.Image]]]:
    """The plan's image queries as (purpose, queries, view images), one purpose per batch.

    Each file is decoded once per batch even when several of its views are in it.
    """
    bank = plan.view_bank(image_size)
    batch: list[ImageQuery] = []

    def render(qs: list[ImageQuery]) -> list[Image.Image]:
        loaded: dict[str, Image.Image] = {}
        out = []
        for q in qs:
            img = loaded.get(q.sample.id)
            if img is None:
                img = loaded[q.sample.id] = load_image(q.sample)
            out.append(bank.make_view(img, q.sample.id, q.view))
        return out

    for q in plan.image_queries:
        if batch and (len(batch) >= batch_size or batch[-1].purpose != q.purpose):
            yield batch[0].purpose, batch, render(batch)
            batch = []
        batch.append(q)
    if batch:
        yield batch[0].purpose, batch, render(batch)


def class_text_embeddings(per_prompt: np.ndarray) -> np.ndarray:
    """``T_c = normalize(mean_p normalize(e_pc))`` for per-prompt embeddings (P, C, D)."""
    e = per_prompt / np.linalg.norm(per_prompt, axis=-1, keepdims=True)  # (P, C, D)
    m = e.mean(axis=0)  # (C, D)
    return (m / np.linalg.norm(m, axis=-1, keepdims=True)).astype(np.float32)


@dataclass
class PlanEmbeddings:
    """The teacher's answers for a plan.

    Attributes:
        train: (sample id, view index) -> (D,) embedding of that training view.
        eval: sample id -> (D,) embedding of the plain evaluation image (empty without zeroshot).
        class_texts: (C, D) class text embeddings (mean over prompts, re-normalized).
        prompt_texts: (P, C, D) per-prompt text embeddings.
        fingerprint, logit_scale, image_size: from the teacher's card.
    """

    train: dict[tuple[str, int], np.ndarray] = field(default_factory=dict)
    eval: dict[str, np.ndarray] = field(default_factory=dict)
    class_texts: np.ndarray | None = None
    prompt_texts: np.ndarray | None = None
    fingerprint: str = ""
    logit_scale: float = 100.0
    image_size: int = 224


def fetch_plan(
    plan: Plan, teacher: Teacher, *, progress: bool = True, batch_size: int = 256
) -> PlanEmbeddings:
    """Ask the teacher for everything in the plan (texts first, then images by batch).

    With a ``CachedTeacher`` only cache misses are paid for, everything fetched before an
    error (402, the query cap, a crash) stays cached for the next call, and a complete fetch
    is also stored as one block (the plan memo) that a rerun reads at once.

    Args:
        plan: from ``build_plan``.
        teacher: any ``Teacher``; a ``CachedTeacher`` adds the memo and a live progress bar.
        progress: show progress (items, cached or not): a bar on a terminal, a few lines
            elsewhere.
        batch_size: images rendered and requested per call.
    """
    card = teacher.card
    out = PlanEmbeddings(
        fingerprint=card.fingerprint, logit_scale=card.logit_scale, image_size=card.image_size
    )
    count = plan.count()
    cached = teacher if isinstance(teacher, CachedTeacher) else None
    # The memo spares a rerun re-rendering and re-encoding every view just to hash its bytes
    # (93% of a rerun's time, profiled with benchmarks/profile_refetch.py).
    memo_key = plan_memo_key(plan, card) if cached is not None else None
    if cached is not None and memo_key is not None:
        memo = cached.recall(memo_key, count.total)
        if memo is not None:
            _fill(out, plan, memo)
            for (purpose, endpoint), n in _query_groups(plan).items():
                cached.record_cache_hits(purpose, endpoint, n)
            note(f"teacher: {count.total} answers read from the cache", enabled=progress)
            return out
    rows: list[np.ndarray] = []
    with progress_bar(total=count.total, unit="q", desc="teacher", enabled=progress) as bar:
        # A CachedTeacher reports cache hits and then each chunk as it lands, so the bar moves
        # while a batch is still in flight (a slow vendor takes a while per batch).
        live = cached.reporting(bar.update) if cached is not None else contextlib.nullcontext()
        with live:
            texts = [q.text for q in plan.text_queries]
            rows.append(teacher.embed_texts(texts, purpose=CLASS_TEXTS))
            if cached is None:
                bar.update(len(texts))
            for purpose, queries, images in iter_image_batches(plan, card.image_size, batch_size):
                rows.append(teacher.embed_images(images, purpose=purpose))
                if cached is None:
                    bar.update(len(queries))
    answers = np.concatenate(rows).astype(np.float32, copy=False)  # (texts + images, D)
    _fill(out, plan, answers)
    if cached is not None and memo_key is not None:
        cached.remember(memo_key, answers)
    return out


def _fill(out: PlanEmbeddings, plan: Plan, emb: np.ndarray) -> None:
    """Distribute (texts + images, D) embeddings in plan order into ``out``."""
    n_texts = len(plan.text_queries)
    out.prompt_texts = emb[:n_texts].reshape(len(plan.prompts), len(plan.dataset.classes), -1)
    out.class_texts = class_text_embeddings(out.prompt_texts)
    for q, e in zip(plan.image_queries, emb[n_texts:], strict=False):
        if q.purpose == EVAL_IMAGES:
            out.eval[q.sample.id] = e
        else:
            out.train[(q.sample.id, q.view)] = e


def _query_groups(plan: Plan) -> dict[tuple[str, EmbeddingEndpoint], int]:
    """Queries per (purpose, endpoint), in the ledger's terms."""
    groups: dict[tuple[str, EmbeddingEndpoint], int] = {}
    if plan.text_queries:
        groups[(CLASS_TEXTS, TEXTS)] = len(plan.text_queries)
    for q in plan.image_queries:
        groups[(q.purpose, IMAGES)] = groups.get((q.purpose, IMAGES), 0) + 1
    return groups


#: Bump to drop every stored plan memo.
PLAN_MEMO_VERSION = 1


def plan_memo_key(plan: Plan, card: ModelCard) -> str:
    """Cache key of a whole plan's answers.

    It covers everything that decides the bytes each query sends: the teacher's weights and
    input size, the view seed, every query in order (sample ids hash each file's path and
    bytes), Pillow's version and the source of the code that decodes, augments and encodes
    images. Change any of them and the memo is simply not found.
    """
    import PIL

    from client_distiller.data import folder, views
    from client_distiller.teacher import wire

    h = hashlib.sha256()

    def part(text: str) -> None:
        data = text.encode()
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)

    for text in (
        f"plan-memo/{PLAN_MEMO_VERSION}",
        card.fingerprint,
        str(card.image_size),
        str(card.embed_dim),
        str(plan.view_seed),
        PIL.__version__,
    ):
        part(text)
    for module in (folder, views, wire):
        part(hashlib.sha256(Path(module.__file__).read_bytes()).hexdigest())
    for t in plan.text_queries:
        part(f"t:{t.text}")
    for q in plan.image_queries:
        part(f"i:{q.purpose}:{q.sample.id}:{q.view}")
    return "plan:" + h.hexdigest()


__all__ = [
    "CLASS_TEXTS",
    "DEFAULT_PROMPTS",
    "EVAL_IMAGES",
    "TRAIN_VIEWS",
    "DatasetError",
    "ImageQuery",
    "Plan",
    "PlanCount",
    "PlanEmbeddings",
    "TextQuery",
    "build_plan",
    "class_text_embeddings",
    "fetch_plan",
    "iter_image_batches",
    "plan_memo_key",
]
