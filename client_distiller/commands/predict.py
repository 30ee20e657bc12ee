"""Classify images with a trained student checkpoint (never queries the teacher)."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from client_distiller.commands.common import EXIT_OK, UserError
from client_distiller.data import read_image
from client_distiller.models import load_student


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``predict``."""
    parser.add_argument(
        "--checkpoint",
        type=Path,
        required=True,
        help="student checkpoint written by `client-distiller run`",
    )
    parser.add_argument("images", nargs="+", type=Path, help="image files to classify")
    parser.add_argument("--top-k", type=int, default=1, help="classes shown per image")


def run(args: argparse.Namespace) -> int:
    """Print the top classes and probabilities of each image."""
    try:
        student = load_student(args.checkpoint)
    except (FileNotFoundError, ValueError) as exc:
        raise UserError(str(exc)) from exc
    images = []
    for path in args.images:
        try:
            images.append(read_image(path))
        except Exception as exc:
            raise UserError(f"cannot read image {path}: {exc}") from exc
    k = max(1, min(args.top_k, len(student.classes)))
    with torch.no_grad():
        probs = student(student.preprocess(images)).softmax(-1)
    for path, p in zip(args.images, probs, strict=False):
        top = torch.topk(p, k)
        ranked = ", ".join(
            f"{student.classes[i]} {float(v):.3f}"
            for v, i in zip(top.values, top.indices, strict=False)
        )
        print(f"{path}\t{ranked}")
    return EXIT_OK
