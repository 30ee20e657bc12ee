"""Accuracy of a trained student checkpoint on every domain of a dataset (no teacher)."""

from __future__ import annotations

import argparse
from pathlib import Path

from client_distiller.commands.common import EXIT_OK, UserError, print_table
from client_distiller.data import resolve_dataset
from client_distiller.evaluate import student_accuracy
from client_distiller.models import load_student


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``evaluate``."""
    parser.add_argument(
        "--checkpoint",
        type=Path,
        required=True,
        help="student checkpoint written by `client-distiller run`",
    )
    parser.add_argument(
        "--data", default="demo", help="dataset folder root/<domain>/<class>/<image>, or 'demo'"
    )
    parser.add_argument(
        "--domains", nargs="+", default=None, help="domains to evaluate (default: all)"
    )


def run(args: argparse.Namespace) -> int:
    """Print the student's accuracy on all images of each domain."""
    try:
        student = load_student(args.checkpoint)
    except (FileNotFoundError, ValueError) as exc:
        raise UserError(str(exc)) from exc
    data = str(args.data)
    if data != "demo" and not Path(data).is_dir():
        raise UserError(f"--data: no such folder: {data}")
    dataset = resolve_dataset(data)
    if list(dataset.classes) != list(student.classes):
        raise UserError(
            f"the dataset's classes {dataset.classes} differ from the student's {student.classes}"
        )
    domains = args.domains or dataset.domains
    rows = []
    for d in domains:
        if d not in dataset.domains:
            raise UserError(f"unknown domain {d!r}; domains: {', '.join(dataset.domains)}")
        samples = dataset.domain_samples(d)
        rows.append([d, len(samples), round(100 * student_accuracy(student, samples), 2)])
    print_table(["domain", "images", "accuracy %"], rows)
    return EXIT_OK
