"""An exported student on onnxruntime: load it, classify images."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from student_runtime.images import ImageInput, as_image, to_batch
from student_runtime.metadata import METADATA_KEY, ModelMetadata
from student_runtime.predictions import Prediction, rank


class ModelLoadError(ValueError):
    """The file is not an exported student onnxruntime can run."""


class Student:
    """An exported student (``client-distiller export --format onnx``) on onnxruntime's CPU.

    >>> student = Student("student.onnx")                      # doctest: +SKIP
    >>> student.predict(["a.png", "b.jpg"], top_k=3)[0].label  # doctest: +SKIP
    'house'

    Images are decoded and resized exactly as the checkpoint's ``client-distiller predict``
    does (RGB, bilinear resize to the input size, values in [0, 1]); the graph normalizes.

    Args:
        path: the exported ``.onnx`` file.
        threads: onnxruntime intra-op threads (None: onnxruntime's default, all cores).

    Raises:
        ModelLoadError: the file is missing, not an ONNX model, or has no student metadata.
    """

    def __init__(self, path: str | os.PathLike[str], *, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise ModelLoadError(f"exported model not found: {self.path}")
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(
                str(self.path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own unrelated exception types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelLoadError(
                f"{self.path} is not an ONNX model onnxruntime can load: {first}"
            ) from exc
        raw = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        if raw is None:
            raise ModelLoadError(
                f"{self.path} has no student metadata ({METADATA_KEY}): export it with "
                f"`client-distiller export`"
            )
        try:
            self.metadata = ModelMetadata.from_json(raw)
        except ValueError as exc:
            raise ModelLoadError(f"{self.path}: {exc}") from exc

    @property
    def classes(self) -> list[str]:
        """Class names in logit order."""
        return list(self.metadata.classes)

    @property
    def input_size(self) -> int:
        """Side of the square input in pixels."""
        return int(self.metadata.input_size)

    def preprocess(self, images: Sequence[ImageInput]) -> np.ndarray:
        """Paths or PIL images -> the graph's input, float32 (n, 3, S, S) in [0, 1].

        Raises:
            UnreadableImageError: a path is not a readable image.
        """
        return to_batch([as_image(item) for item in images], self.input_size)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """The graph on a preprocessed batch: logits, (n, len(classes))."""
        if len(batch) == 0:
            return np.empty((0, len(self.classes)), dtype=np.float32)
        feeds = {self.metadata.input_name: np.ascontiguousarray(batch, dtype=np.float32)}
        (logits,) = self.session.run([self.metadata.output_name], feeds)
        return np.asarray(logits)

    def logits(self, images: Sequence[ImageInput], *, batch_size: int = 32) -> np.ndarray:
        """Logits of images (paths or PIL images), (n, len(classes)), ``batch_size`` at a time."""
        parts = [
            self.run(self.preprocess(images[i : i + batch_size]))
            for i in range(0, len(images), batch_size)
        ]
        return np.concatenate(parts) if parts else self.run(np.empty((0, 3, 1, 1)))

    def predict(
        self, images: Sequence[ImageInput], *, top_k: int = 1, batch_size: int = 32
    ) -> list[Prediction]:
        """The ``top_k`` classes and probabilities of each image.

        Args:
            images: file paths or PIL images.
            top_k: classes per image (at most the number of classes).
            batch_size: images per graph call.

        Raises:
            UnreadableImageError: a path is not a readable image.
        """
        paths = [None if isinstance(item, Image.Image) else str(item) for item in images]
        return rank(self.logits(images, batch_size=batch_size), self.classes, top_k, paths)
