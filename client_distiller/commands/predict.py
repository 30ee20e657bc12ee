"""Classify image files and folders with a trained student (never queries the teacher)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import torch
from pydantic import Field
from pydantic_settings import CliPositionalArg

from client_distiller.commands.common import EXIT_OK, UserError
from client_distiller.commands.options import VERBATIM, CheckpointOptions, Options
from client_distiller.export import ModelFileError, Predictor, open_predictor
from student_runtime import FileRun, classify_files


class ModelOptions(CheckpointOptions):
    """A trained student in any of its files: checkpoint, ONNX or TorchScript export."""

    checkpoint: Path = Field(
        description="student checkpoint (`client-distiller run`) or exported model "
        "(`client-distiller export`: ONNX or TorchScript)"
    )
    threads: int | None = Field(None, ge=1, description="CPU threads (torch and onnxruntime)")

    def open_model(self) -> Predictor:
        """The student, whatever kind of file ``--checkpoint`` is."""
        torch.set_flush_denormal(True)
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            return open_predictor(
                self.checkpoint, clip_config_dirs=self.clip_config_dirs, threads=self.threads
            )
        except ModelFileError as exc:
            raise UserError(str(exc)) from exc


class BatchOptions(Options):
    """How many images go through the model at once."""

    batch_size: int = Field(32, ge=1, description="images per forward pass")


class Predict(ModelOptions, BatchOptions):
    """Classify image files and folders with a trained student (never queries the teacher).

    Prints one line per image (PATH, then the top classes with their probabilities; --json:
    one JSON object per line). Unreadable files are skipped with one warning line each and
    counted at the end; the exit code is 0 if any image was classified, 1 if none was.
    """

    images: CliPositionalArg[Annotated[list[Path], VERBATIM]] = Field(
        description="image files and folders (folders are searched recursively)"
    )
    top_k: int = Field(1, ge=1, description="classes shown per image")
    # The flag is --json (a shortcut in ``client_distiller.cli``): a field named ``json``
    # would shadow pydantic's ``BaseModel.json``, and an alias would make the environment
    # variable a bare ``JSON`` instead of ``VL2V_AS_JSON``.
    as_json: bool = Field(
        False, description='one JSON object per line: {"path", "labels", "probabilities"}'
    )

    def run(self) -> int:
        """Classify every image, streaming one line each; warnings and the count to stderr."""
        model = self.open_model()
        run = FileRun()

        def skipped(path: Path, reason: str) -> None:
            print(f"warning: skipped {path}: {reason}", file=sys.stderr)

        for prediction in classify_files(
            self.images,
            model.logits,
            model.classes,
            top_k=self.top_k,
            batch_size=self.batch_size,
            on_skip=skipped,
            run=run,
        ):
            print(prediction.json_line() if self.as_json else prediction.text_line(), flush=True)
        if run.classified == 0:
            if run.skipped == 0:
                raise UserError("no image files found in " + ", ".join(str(p) for p in self.images))
            raise UserError(f"no image was classified: {run.skipped} unreadable file(s) skipped")
        print(run.summary(), file=sys.stderr)
        return EXIT_OK
