"""Accuracy of a trained student on every image of each domain of a dataset (no teacher)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from pydantic import Field

from client_distiller.commands.common import EXIT_OK, UserError, open_dataset, print_table
from client_distiller.commands.options import SEVERAL, DatasetOptions
from client_distiller.commands.predict import BatchOptions, ModelOptions
from client_distiller.data import Sample
from client_distiller.export import Predictor
from student_runtime import read_image


def correct_count(model: Predictor, samples: Sequence[Sample], batch_size: int) -> int:
    """How many of ``samples`` the model classifies right (images read as ``predict`` does)."""
    correct = 0
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        logits = model.logits([read_image(s.path) for s in chunk])
        correct += sum(int(p == s.label) for p, s in zip(logits.argmax(1), chunk, strict=True))
    return correct


class Evaluate(ModelOptions, DatasetOptions, BatchOptions):
    """Accuracy of a trained student on every image of each domain of a dataset (no teacher).

    Every image of each domain is scored: these are not the ID/OOD numbers of `run`, which
    score the held-out splits only. --checkpoint may be an exported model too.
    """

    domains: Annotated[list[str], SEVERAL] = Field(
        [], description="domains to evaluate (default: all; several: --domains A B)"
    )

    def run(self) -> int:
        """Print one table: domain, number of images, accuracy in %."""
        model = self.open_model()
        dataset = open_dataset(self)
        if list(dataset.classes) != list(model.classes):
            raise UserError(
                f"the dataset's classes {dataset.classes} differ from the student's {model.classes}"
            )
        for d in self.domains:
            if d not in dataset.domains:
                raise UserError(f"unknown domain {d!r}; domains: {', '.join(dataset.domains)}")
        rows: list[list[object]] = []
        total = right = 0
        for d in self.domains or dataset.domains:
            samples = dataset.domain_samples(d)
            correct = correct_count(model, samples, self.batch_size)
            rows.append([d, len(samples), round(100 * correct / max(1, len(samples)), 2)])
            total, right = total + len(samples), right + correct
        if len(rows) > 1:
            rows.append(["all", total, round(100 * right / max(1, total), 2)])
        print(
            f"Accuracy of {self.checkpoint} ({model.kind}) on {dataset.root}: every image of "
            f"each domain is scored (not the ID/OOD splits of `run`)\n"
        )
        print_table(["domain", "images", "accuracy %"], rows)
        return EXIT_OK
