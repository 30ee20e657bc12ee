"""Open any student file as a predictor: a checkpoint, an ONNX export or a TorchScript export.

``predict`` and ``evaluate`` take whichever the user has; every kind answers the same two
calls (``run`` on a preprocessed batch, ``logits`` on images) with the same preprocessing, and
every failure to open one is a :class:`ModelFileError` with a one-line message (never a
traceback: a corrupt or truncated file is a user's mistake, not a bug).
"""

from __future__ import annotations

import os
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
from PIL import Image

from client_distiller.models.student import Student, load_student, to_tensor_batch
from student_runtime.images import to_batch
from student_runtime.metadata import METADATA_KEY, ModelMetadata

#: What a student file is.
FileKind = Literal["checkpoint", "onnx", "torchscript"]
#: The TorchScript extra file that holds the metadata.
TORCHSCRIPT_METADATA = METADATA_KEY + ".json"
#: torch 2.14 marks TorchScript deprecated on every call; the format still works and the issue
#: asks for it, so these calls are quiet (the README says ONNX is the recommended format).
TORCHSCRIPT_DEPRECATION = r".*torch\.jit.*deprecated.*"


class ModelFileError(ValueError):
    """A student file that cannot be opened (missing, corrupt, or not a student)."""


class Predictor(Protocol):
    """A student that classifies images, whatever file it came from."""

    kind: FileKind
    classes: list[str]
    input_size: int

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Logits of a preprocessed batch: float32 (n, 3, S, S) in [0, 1] -> (n, C)."""
        ...

    def logits(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Logits of RGB images (resized to the input size here), (n, C)."""
        ...


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def detect_kind(path: Path) -> FileKind:
    """Which kind of student file ``path`` is, from its contents (and ``.onnx`` suffix).

    torch's checkpoints and TorchScript files are both zip archives; a TorchScript file has a
    ``code/`` folder. Anything else is ONNX when named ``.onnx``, else taken as a (legacy or
    broken) checkpoint, whose loader then says what is wrong with it.

    Raises:
        ModelFileError: the file does not exist.
    """
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (OSError, zipfile.BadZipFile):
            return "checkpoint"
        if any("/code/" in name for name in names):
            return "torchscript"
        return "checkpoint"
    return "onnx" if path.suffix.lower() == ".onnx" else "checkpoint"


def load_checkpoint(
    path: Path, *, clip_config_dirs: Sequence[str | os.PathLike[str]] = ()
) -> tuple[Student, dict[str, Any]]:
    """A student checkpoint and its ``extra`` (the stage and algorithm that wrote it).

    Raises:
        ModelFileError: missing, corrupt, or not a student checkpoint.
    """
    try:
        student = load_student(path, clip_config_dirs=clip_config_dirs)
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (FileNotFoundError, ValueError) as exc:
        raise ModelFileError(str(exc)) from exc
    except Exception as exc:  # torch.load and load_state_dict raise many types
        raise ModelFileError(
            f"cannot load the student checkpoint {path}: it is corrupt or not a student "
            f"checkpoint ({_first_line(exc)})"
        ) from exc
    extra = payload.get("extra", {}) if isinstance(payload, dict) else {}
    return student, dict(extra) if isinstance(extra, dict) else {}


class CheckpointPredictor:
    """A ``Student`` checkpoint in torch (eager)."""

    kind: FileKind = "checkpoint"

    def __init__(self, student: Student) -> None:
        self.student = student.eval()
        self.classes = list(student.classes)
        self.input_size = int(student.input_size)

    def run(self, batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.student(torch.from_numpy(np.ascontiguousarray(batch))).numpy()

    def logits(self, images: Sequence[Image.Image]) -> np.ndarray:
        with torch.no_grad():
            return self.student(self.student.preprocess(images)).numpy()


class TorchScriptPredictor:
    """A TorchScript export (``client-distiller export --format torchscript``)."""

    kind: FileKind = "torchscript"

    def __init__(self, path: Path) -> None:
        files = {TORCHSCRIPT_METADATA: ""}
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=TORCHSCRIPT_DEPRECATION)
                self.module = torch.jit.load(str(path), map_location="cpu", _extra_files=files)
        except Exception as exc:  # torch.jit.load raises many types
            raise ModelFileError(
                f"cannot load the TorchScript file {path}: {_first_line(exc)}"
            ) from exc
        raw = files[TORCHSCRIPT_METADATA]
        if not raw:
            raise ModelFileError(
                f"{path} is a TorchScript file without student metadata: export it with "
                f"`client-distiller export --format torchscript`"
            )
        try:
            self.metadata = ModelMetadata.from_json(raw)
        except ValueError as exc:
            raise ModelFileError(f"{path}: {exc}") from exc
        self.module.eval()
        self.classes = list(self.metadata.classes)
        self.input_size = int(self.metadata.input_size)

    def run(self, batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.module(torch.from_numpy(np.ascontiguousarray(batch))).numpy()

    def logits(self, images: Sequence[Image.Image]) -> np.ndarray:
        x = to_tensor_batch(images, self.input_size).float() / 255.0
        with torch.no_grad():
            return self.module(x).numpy()


class OnnxPredictor:
    """An ONNX export on onnxruntime, through the torch-free runtime."""

    kind: FileKind = "onnx"

    def __init__(self, path: Path, *, threads: int | None = None) -> None:
        from student_runtime import ModelLoadError, Student

        try:
            self.runtime = Student(path, threads=threads)
        except ModelLoadError as exc:
            raise ModelFileError(str(exc)) from exc
        self.metadata = self.runtime.metadata
        self.classes = self.runtime.classes
        self.input_size = self.runtime.input_size

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.runtime.run(batch)

    def logits(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self.runtime.run(to_batch(images, self.input_size))


def open_predictor(
    path: str | os.PathLike[str],
    *,
    clip_config_dirs: Sequence[str | os.PathLike[str]] = (),
    threads: int | None = None,
) -> Predictor:
    """Open a student checkpoint or an exported student, whichever ``path`` is.

    Args:
        path: a ``client-distiller run`` checkpoint, or a ``client-distiller export`` file.
        clip_config_dirs: open_clip config folders (a VL2V-SD checkpoint's architecture).
        threads: onnxruntime threads for an ONNX file (torch's are set by the caller).

    Raises:
        ModelFileError: the file is missing, corrupt, or not a student.
    """
    path = Path(path)
    kind = detect_kind(path)
    if kind == "onnx":
        return OnnxPredictor(path, threads=threads)
    if kind == "torchscript":
        return TorchScriptPredictor(path)
    student, _ = load_checkpoint(path, clip_config_dirs=clip_config_dirs)
    return CheckpointPredictor(student)
