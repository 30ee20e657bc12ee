"""Classify images with a trained student checkpoint (never queries the teacher)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import torch
from pydantic import Field
from pydantic_settings import CliPositionalArg

from client_distiller.commands.common import EXIT_OK, UserError
from client_distiller.commands.options import VERBATIM, CheckpointOptions
from client_distiller.data import read_image
from client_distiller.models import load_student


class Predict(CheckpointOptions):
    """Classify images with a trained student checkpoint (never queries the teacher)."""

    images: CliPositionalArg[Annotated[list[Path], VERBATIM]] = Field(
        description="image files to classify"
    )
    top_k: int = Field(1, description="classes shown per image")

    def run(self) -> int:
        """Print the top classes and probabilities of each image."""
        try:
            student = load_student(self.checkpoint, clip_config_dirs=self.clip_config_dirs)
        except (FileNotFoundError, ValueError) as exc:
            raise UserError(str(exc)) from exc
        images = []
        for path in self.images:
            try:
                images.append(read_image(path))
            except Exception as exc:
                raise UserError(f"cannot read image {path}: {exc}") from exc
        k = max(1, min(self.top_k, len(student.classes)))
        with torch.no_grad():
            probs = student(student.preprocess(images)).softmax(-1)
        for path, p in zip(self.images, probs, strict=False):
            top = torch.topk(p, k)
            ranked = ", ".join(
                f"{student.classes[i]} {float(v):.3f}"
                for v, i in zip(top.values, top.indices, strict=False)
            )
            print(f"{path}\t{ranked}")
        return EXIT_OK
