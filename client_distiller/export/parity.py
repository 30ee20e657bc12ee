"""Does an exported student compute what its checkpoint computes?

Parity is measured on logits: the largest absolute difference over every image and class, and
whether the top-1 class is the same on every image. An fp32 export must match within 1e-4
(:data:`FP32_TOLERANCE`); the gap is float reassociation (onnxruntime fuses and reorders),
typically around 1e-5 for logits of magnitude 10-20.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from client_distiller.export.loading import Predictor

#: The largest absolute logit difference an fp32 export may have from its checkpoint.
FP32_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Parity:
    """How close a candidate's logits are to a reference's.

    Attributes:
        images: inputs compared.
        max_abs_diff: the largest ``|candidate - reference|`` over every input and class.
        top1_agree: inputs whose top-1 class is the same.
    """

    images: int
    max_abs_diff: float
    top1_agree: int

    @property
    def top1_identical(self) -> bool:
        """The top-1 class agrees on every input."""
        return self.top1_agree == self.images

    def within(self, tolerance: float = FP32_TOLERANCE) -> bool:
        """Logits within ``tolerance`` and the same top-1 class on every input."""
        return self.max_abs_diff <= tolerance and self.top1_identical

    def describe(self) -> str:
        """``max |logit diff| 3.1e-06 over N inputs, top-1 identical on N/N``."""
        return (
            f"max |logit diff| {self.max_abs_diff:.1e} over {self.images} inputs, "
            f"top-1 identical on {self.top1_agree}/{self.images}"
        )


def compare_logits(reference: np.ndarray, candidate: np.ndarray) -> Parity:
    """Parity of two logit arrays of the same shape, (n, C)."""
    reference, candidate = np.asarray(reference), np.asarray(candidate)
    if reference.shape != candidate.shape:
        raise ValueError(f"logit shapes differ: {reference.shape} vs {candidate.shape}")
    diff = float(np.abs(reference.astype(np.float64) - candidate).max()) if reference.size else 0.0
    agree = int((reference.argmax(1) == candidate.argmax(1)).sum()) if reference.size else 0
    return Parity(images=len(reference), max_abs_diff=diff, top1_agree=agree)


def compare_on_images(
    reference: Predictor,
    candidate: Predictor,
    images: Sequence[Image.Image],
    *,
    batch_size: int = 64,
) -> Parity:
    """Parity of two predictors on RGB images, ``batch_size`` at a time."""
    ref, cand = [], []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        ref.append(reference.logits(chunk))
        cand.append(candidate.logits(chunk))
    if not ref:
        return Parity(0, 0.0, 0)
    return compare_logits(np.concatenate(ref), np.concatenate(cand))


def compare_on_random(
    reference: Predictor, candidate: Predictor, *, batches: Sequence[int] = (1, 3), seed: int = 0
) -> Parity:
    """Parity on seeded random inputs in [0, 1], one call per batch size (batch 1 and > 1
    check the dynamic batch dimension)."""
    rng = np.random.default_rng(seed)
    size = reference.input_size
    ref, cand = [], []
    for n in batches:
        x = rng.random((n, 3, size, size), dtype=np.float32)
        ref.append(reference.run(x))
        cand.append(candidate.run(x))
    return compare_logits(np.concatenate(ref), np.concatenate(cand))
