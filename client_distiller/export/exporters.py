"""Export a student as one deployable file: ONNX (recommended) or TorchScript.

The exported graph is the whole predictor: images in [0, 1] -> normalization (the checkpoint's
mean/std) -> backbone -> projection -> frozen text head (or linear head) -> logits, with a
dynamic batch dimension. What the graph does not hold (class names, prompts, fingerprints,
input size, mean/std for the record) travels in the same file as ``ModelMetadata`` JSON.

ONNX goes through ``torch.onnx.export(..., dynamo=True)``, the exporter torch recommends
(it needs ``onnx`` and ``onnxscript``, both in the ``client`` extra). Files are written to a
temporary sibling and renamed into place, so an interrupted export never leaves a torn file
under the final name.
"""

from __future__ import annotations

import importlib.metadata
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import torch

from client_distiller.export.loading import TORCHSCRIPT_DEPRECATION, TORCHSCRIPT_METADATA
from client_distiller.models.student import Student
from student_runtime.metadata import METADATA_KEY, ModelMetadata

#: The export formats.
ExportFormat = Literal["onnx", "torchscript"]
#: The file suffix each format gets by default.
SUFFIXES: dict[str, str] = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}


class ExportError(RuntimeError):
    """The exporter failed on this student (the message names the step)."""


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


@contextmanager
def _atomic_target(out: Path) -> Iterator[Path]:
    """A temporary sibling of ``out`` to write to; renamed over ``out`` on success."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        yield tmp
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def _example(student: Student, batch: int = 2) -> torch.Tensor:
    # Batch 2, not 1: torch.export specializes a dimension traced at size 1 to the constant 1.
    generator = torch.Generator().manual_seed(0)
    return torch.rand(batch, 3, student.input_size, student.input_size, generator=generator)


def export_onnx(student: Student, out: Path, metadata: ModelMetadata) -> ModelMetadata:
    """Write ``student`` as an ONNX model with ``metadata`` in its ``metadata_props``.

    Returns:
        The metadata as written (with the exporter's facts).

    Raises:
        ExportError: the exporter is missing (``onnxscript``) or fails on this model.
    """
    student.eval()
    batch = torch.export.Dim("batch", min=1)
    try:
        with torch.no_grad():
            program = torch.onnx.export(
                student,
                (_example(student),),
                None,
                input_names=[metadata.input_name],
                output_names=[metadata.output_name],
                dynamic_shapes={"x": {0: batch}},
                dynamo=True,
                verbose=False,
            )
    except ImportError as exc:
        raise ExportError(
            f"the ONNX exporter needs onnx and onnxscript: pip install '.[client]' ({exc})"
        ) from exc
    except torch.onnx.errors.OnnxExporterError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"torch.onnx.export failed on this student: {first}") from exc
    if program is None:  # only the legacy exporter returns None
        raise ExportError("torch.onnx.export returned no program")
    written = metadata.with_changes(
        exporter={
            "format": "onnx",
            "tool": "torch.onnx.export(dynamo=True)",
            "opset": int(program.model.opset_imports.get("", 0)),
            "torch": torch.__version__,
            "onnxscript": _version("onnxscript"),
        }
    )
    program.model.metadata_props[METADATA_KEY] = written.to_json()
    with _atomic_target(out) as tmp:
        # One self-contained file (students are megabytes, far below protobuf's 2 GB limit).
        program.save(str(tmp), external_data=False)
    return written


def export_torchscript(student: Student, out: Path, metadata: ModelMetadata) -> ModelMetadata:
    """Write ``student`` as a traced TorchScript module with ``metadata`` as an extra file.

    Returns:
        The metadata as written (with the exporter's facts).
    """
    student.eval()
    written = metadata.with_changes(
        exporter={"format": "torchscript", "tool": "torch.jit.trace", "torch": torch.__version__}
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=TORCHSCRIPT_DEPRECATION)
        with torch.no_grad():
            traced = torch.jit.trace(student, _example(student))
        with _atomic_target(out) as tmp:
            torch.jit.save(traced, str(tmp), _extra_files={TORCHSCRIPT_METADATA: written.to_json()})
    return written


def export_student(
    student: Student, out: str | os.PathLike[str], metadata: ModelMetadata, *, fmt: ExportFormat
) -> ModelMetadata:
    """Export ``student`` to ``out`` in format ``fmt``; returns the metadata written."""
    path = Path(out)
    if fmt == "onnx":
        return export_onnx(student, path, metadata)
    if fmt == "torchscript":
        return export_torchscript(student, path, metadata)
    raise ValueError(f"unknown export format {fmt!r}; choose onnx or torchscript")
