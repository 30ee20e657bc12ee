"""Accuracy of a trained student checkpoint on every domain of a dataset (no teacher)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from client_distiller.commands.common import EXIT_OK, UserError, open_dataset, print_table
from client_distiller.commands.options import SEVERAL, CheckpointOptions, DatasetOptions
from client_distiller.evaluation import student_accuracy
from client_distiller.models import load_student


class Evaluate(CheckpointOptions, DatasetOptions):
    """Accuracy of a trained student checkpoint on every domain of a dataset (no teacher)."""

    domains: Annotated[list[str], SEVERAL] = Field(
        [], description="domains to evaluate (default: all; several: --domains A B)"
    )

    def run(self) -> int:
        """Print the student's accuracy on all images of each domain."""
        try:
            student = load_student(self.checkpoint, clip_config_dirs=self.clip_config_dirs)
        except (FileNotFoundError, ValueError) as exc:
            raise UserError(str(exc)) from exc
        dataset = open_dataset(self)
        if list(dataset.classes) != list(student.classes):
            raise UserError(
                f"the dataset's classes {dataset.classes} differ from the student's "
                f"{student.classes}"
            )
        rows = []
        for d in self.domains or dataset.domains:
            if d not in dataset.domains:
                raise UserError(f"unknown domain {d!r}; domains: {', '.join(dataset.domains)}")
            samples = dataset.domain_samples(d)
            rows.append([d, len(samples), round(100 * student_accuracy(student, samples), 2)])
        print_table(["domain", "images", "accuracy %"], rows)
        return EXIT_OK
