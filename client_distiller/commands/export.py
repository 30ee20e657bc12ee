"""Export a student checkpoint as one deployable file: ONNX (default) or TorchScript."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import torch
from PIL import Image
from pydantic import Field

from client_distiller.commands.common import EXIT_OK, UserError
from client_distiller.commands.options import SEVERAL, CheckpointOptions
from client_distiller.export import (
    FP32_TOLERANCE,
    SUFFIXES,
    CheckpointPredictor,
    ExportError,
    ModelFileError,
    compare_on_images,
    compare_on_random,
    export_student,
    load_checkpoint,
    metadata_of,
    open_predictor,
)
from student_runtime import UnreadableImageError, image_files, read_image


class Export(CheckpointOptions):
    """Export a student checkpoint as one deployable file: ONNX (default) or TorchScript.

    The file holds the whole predictor (normalization, backbone, projection, head; dynamic
    batch size) and its metadata (class names, prompts, teacher fingerprint, input size,
    mean/std). An ONNX file runs without torch: `python -m student_runtime MODEL IMAGES`.
    """

    format: Literal["onnx", "torchscript"] = Field(
        "onnx", description="onnx (runs on onnxruntime, torch-free) or torchscript"
    )
    out: Path | None = Field(
        None,
        description="the exported file (default: next to the checkpoint, <name>.onnx or "
        "<name>.torchscript.pt)",
    )
    verify: bool = Field(
        True,
        description="load the exported file back and compare its logits with the checkpoint's "
        "on random inputs at batch 1 and 3 (--no-verify: skip)",
    )
    verify_images: Annotated[list[Path], SEVERAL] = Field(
        [],
        description="also compare on these image files and folders (recursively): every image "
        "at batch 64, every tenth one at batch 1 (several: --verify-images A B)",
    )

    def target(self) -> Path:
        """Where the export goes."""
        if self.out is not None:
            return self.out
        return self.checkpoint.with_name(self.checkpoint.stem + SUFFIXES[self.format])

    def run(self) -> int:
        """Export, then (by default) check the file against the checkpoint."""
        torch.set_flush_denormal(True)
        out = self.target()
        if out.resolve() == self.checkpoint.resolve():
            raise UserError(f"--out {out} would overwrite the checkpoint")
        try:
            student, extra = load_checkpoint(
                self.checkpoint, clip_config_dirs=self.clip_config_dirs
            )
        except ModelFileError as exc:
            raise UserError(str(exc)) from exc
        print(f"exporting {self.checkpoint} as {self.format} (this takes a while) ...", flush=True)
        try:
            written = export_student(
                student, out, metadata_of(student, checkpoint=self.checkpoint, extra=extra),
                fmt=self.format,
            )  # fmt: skip
        except ExportError as exc:
            raise UserError(str(exc)) from exc
        except OSError as exc:
            raise UserError(f"cannot write {out}: {exc}") from exc
        print(
            f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB): {len(written.classes)} classes, "
            f"{written.head} head, input {written.input_size}x{written.input_size} RGB in [0, 1] "
            f"(normalized inside), dynamic batch; {written.exporter.get('tool')}"
        )
        if self.verify:
            try:
                exported = open_predictor(out)
            except ModelFileError as exc:
                raise UserError(f"the exported file does not load: {exc}") from exc
            reference = CheckpointPredictor(student)
            checks = [("random inputs", compare_on_random(reference, exported))]
            if self.verify_images:
                images = self.read_verify_images()
                checks.append(("images, batch 64", compare_on_images(reference, exported, images)))
                checks.append(
                    (
                        "images, batch 1",
                        compare_on_images(reference, exported, images[::10], batch_size=1),
                    )
                )
            for what, parity in checks:
                if not parity.within(FP32_TOLERANCE):
                    raise UserError(
                        f"the exported file does not match the checkpoint on {what}: "
                        f"{parity.describe()} (tolerance {FP32_TOLERANCE:.0e})"
                    )
                print(f"verified against the checkpoint ({what}): {parity.describe()}")
        return EXIT_OK

    def read_verify_images(self) -> list[Image.Image]:
        """The readable images of ``--verify-images`` (unreadable ones are an error here)."""
        images: list[Image.Image] = []
        for path in image_files(self.verify_images):
            try:
                images.append(read_image(path))
            except UnreadableImageError as exc:
                raise UserError(str(exc)) from exc
        if not images:
            raise UserError("--verify-images: no image files found")
        return images
