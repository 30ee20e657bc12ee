"""From logits to ranked labels, and the file loop both command lines share.

``python -m student_runtime`` and ``client-distiller predict`` classify files the same way
(:func:`classify_files`): folders searched recursively, unreadable files skipped with one
warning each, results streamed batch by batch, one text or JSON line per image
(:meth:`Prediction.text_line`, :meth:`Prediction.json_line`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from student_runtime.images import UnreadableImageError, image_files, read_image


@dataclass(frozen=True)
class Prediction:
    """The top classes of one image.

    Attributes:
        labels: class names, most probable first.
        probabilities: their softmax probabilities (over all classes), same order.
        path: the image file, when the input was one.
    """

    labels: tuple[str, ...]
    probabilities: tuple[float, ...]
    path: str | None = None

    @property
    def label(self) -> str:
        """The top-1 class."""
        return self.labels[0]

    def text_line(self) -> str:
        """``PATH<TAB>label p, label p, ...`` (probabilities to 3 decimals)."""
        ranked = ", ".join(
            f"{c} {p:.3f}" for c, p in zip(self.labels, self.probabilities, strict=True)
        )
        return f"{self.path}\t{ranked}"

    def json_line(self) -> str:
        """``{"path": ..., "labels": [...], "probabilities": [...]}`` on one line."""
        return json.dumps(
            {
                "path": self.path,
                "labels": list(self.labels),
                "probabilities": [round(p, 6) for p in self.probabilities],
            }
        )


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (stable: the row maximum is subtracted first)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def rank(
    logits: np.ndarray,
    classes: Sequence[str],
    top_k: int = 1,
    paths: Sequence[str | None] | None = None,
) -> list[Prediction]:
    """The ``top_k`` classes of each row of ``logits`` (ties keep class order)."""
    k = max(1, min(int(top_k), len(classes)))
    probs = softmax(logits)
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    names = paths if paths is not None else [None] * len(probs)
    return [
        Prediction(
            labels=tuple(classes[int(i)] for i in idx),
            probabilities=tuple(float(p[int(i)]) for i in idx),
            path=name,
        )
        for p, idx, name in zip(probs, order, names, strict=True)
    ]


@dataclass
class FileRun:
    """What :func:`classify_files` did: images classified, files skipped."""

    classified: int = 0
    skipped: int = 0

    def summary(self) -> str:
        """``classified N image(s); skipped M unreadable file(s)``."""
        return f"classified {self.classified} image(s); skipped {self.skipped} unreadable file(s)"


def classify_files(
    paths: Iterable[str | os.PathLike[str]],
    logits_fn: Callable[[Sequence[Image.Image]], np.ndarray],
    classes: Sequence[str],
    *,
    top_k: int = 1,
    batch_size: int = 32,
    on_skip: Callable[[Path, str], None] | None = None,
    run: FileRun | None = None,
) -> Iterator[Prediction]:
    """Classify every image file under ``paths``, batch by batch, skipping unreadable files.

    Args:
        paths: files and folders (folders are searched recursively, see ``image_files``).
        logits_fn: RGB images -> logits, (n, len(classes)).
        classes: class names in logit order.
        top_k: classes per prediction.
        batch_size: images per call of ``logits_fn`` (memory stays bounded for big folders).
        on_skip: called with (path, reason) for each file that cannot be read.
        run: counts of classified and skipped files, updated as the loop goes.

    Yields:
        One ``Prediction`` per readable image, in file order.
    """
    run = run if run is not None else FileRun()
    batch: list[tuple[Path, Image.Image]] = []

    def flush() -> list[Prediction]:
        logits = logits_fn([img for _, img in batch])
        out = rank(logits, classes, top_k, [str(p) for p, _ in batch])
        run.classified += len(batch)
        batch.clear()
        return out

    for path in image_files(paths):
        try:
            batch.append((path, read_image(path)))
        except UnreadableImageError as exc:
            run.skipped += 1
            if on_skip is not None:
                on_skip(path, exc.reason)
            continue
        if len(batch) >= batch_size:
            yield from flush()
    if batch:
        yield from flush()
