"""Evaluation: the accuracy of an algorithm (or a saved student) on evaluation splits.

Protocol (DomainBed): the ID number is the mean accuracy on the source domains' out-splits,
the OOD number the accuracy on the target domain's in-split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from client_distiller.algorithms import Algorithm, Batch
from client_distiller.data import Sample, load_image
from client_distiller.models.student import Student, to_tensor_batch


@dataclass
class EvalSet:
    """One domain's evaluation split, as tensors at one input size.

    Attributes:
        domain: the domain.
        split: ``"out"`` (a source domain: ID) or ``"in"`` (the target: OOD).
        samples: its images.
        t_img: the teacher's embeddings of the plain images (zero-shot), (n, d), or None.
    """

    domain: str
    split: str
    samples: list[Sample]
    t_img: torch.Tensor | None = None
    _x: dict[int, torch.Tensor] = field(default_factory=dict)

    def x(self, size: int) -> torch.Tensor:
        """uint8 images resized from the files to ``size`` (as ``predict`` does)."""
        if size not in self._x:
            self._x[size] = to_tensor_batch([load_image(s) for s in self.samples], size)
        return self._x[size]

    @property
    def y(self) -> torch.Tensor:
        """Class indices, (n,)."""
        return torch.tensor([s.label for s in self.samples])


@torch.no_grad()
def accuracy(algorithm: Algorithm, ev: EvalSet, size: int, batch_size: int = 256) -> float:
    """Top-1 accuracy of ``algorithm`` on an evaluation split (images at ``size``)."""
    correct = 0
    y = ev.y
    x = ev.x(size) if algorithm.student is not None else None
    for start in range(0, len(y), batch_size):
        sl = slice(start, start + batch_size)
        batch = Batch(
            x=x[sl].float() / 255.0 if x is not None else torch.empty(0),
            y=y[sl],
            t_img=ev.t_img[sl] if ev.t_img is not None else None,
        )
        correct += int((algorithm.predict_batch(batch).argmax(1) == batch.y).sum())
    return correct / max(1, len(y))


def mean_accuracy(algorithm: Algorithm, sets: Sequence[EvalSet], size: int) -> float:
    """Mean of the per-split accuracies (training-domain validation over the source splits)."""
    return float(np.mean([accuracy(algorithm, ev, size) for ev in sets]))


def student_accuracy(student: Student, samples: Sequence[Sample], batch_size: int = 128) -> float:
    """Accuracy of a loaded student checkpoint on samples (``client-distiller evaluate``)."""
    correct = 0
    student.eval()
    with torch.no_grad():
        for start in range(0, len(samples), batch_size):
            chunk = samples[start : start + batch_size]
            x = student.preprocess([load_image(s) for s in chunk])
            y = torch.tensor([s.label for s in chunk])
            correct += int((student(x).argmax(1) == y).sum())
    return correct / max(1, len(samples))
