"""The metadata an exported student carries, built from its checkpoint.

The schema is ``student_runtime.ModelMetadata`` (one definition, read by the torch-free
runtime); this module fills it from a loaded ``Student`` and its checkpoint file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from client_distiller.models.student import Student
from model_io import state_dict_fingerprint
from student_runtime.metadata import ModelMetadata


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def metadata_of(
    student: Student,
    *,
    checkpoint: Path | None = None,
    extra: Mapping[str, Any] | None = None,
) -> ModelMetadata:
    """The metadata of ``student`` (the exporter adds how it was exported).

    Args:
        student: the loaded student.
        checkpoint: the checkpoint file it was loaded from (its name and sha256 are recorded).
        extra: the checkpoint's ``extra`` (stage and algorithm of the run that wrote it).
    """
    source: dict[str, Any] = {k: v for k, v in (extra or {}).items() if _plain(v)}
    if checkpoint is not None:
        source["checkpoint"] = checkpoint.name
        source["checkpoint_sha256"] = file_sha256(checkpoint)
    config = student.config()
    return ModelMetadata(
        classes=list(student.classes),
        input_size=int(student.input_size),
        mean=[float(v) for v in config["mean"]],
        std=[float(v) for v in config["std"]],
        head=str(student.head_kind),
        logit_scale=float(student.logit_scale) if student.head_kind == "text" else 1.0,
        prompts=list(student.prompts),
        teacher_fingerprint=student.teacher_fingerprint,
        weights_fingerprint=state_dict_fingerprint(student),
        backbone=dict(config["backbone"]),
        source=source,
    )


def _plain(value: Any) -> bool:
    """JSON-safe scalars only (a checkpoint's extra may hold anything a run put there)."""
    return isinstance(value, (str, int, float, bool)) or value is None
