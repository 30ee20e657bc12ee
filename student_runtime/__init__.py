"""A torch-free runtime for exported VL2V students: onnxruntime, numpy and Pillow only.

    from student_runtime import Student
    student = Student("student.onnx")
    for p in student.predict(["a.png", "b.jpg"], top_k=3):
        print(p.path, p.labels, p.probabilities)

Install it alone with ``pip install '.[runtime]'``; ``python -m student_runtime --help`` is a
small command line over the same API. The model comes from ``client-distiller export``; its
metadata (class names, input size, mean/std, fingerprints) travels inside the ``.onnx`` file.
This package never imports ``client_distiller``, torch or timm (a test runs it with them
unimportable).
"""

from student_runtime.images import (
    IMAGE_SUFFIXES,
    UnreadableImageError,
    image_files,
    read_image,
    to_batch,
    to_rgb,
)
from student_runtime.metadata import FORMAT, METADATA_KEY, ModelMetadata
from student_runtime.predictions import FileRun, Prediction, classify_files, rank, softmax
from student_runtime.student import ModelLoadError, Student

__all__ = [
    "FORMAT",
    "IMAGE_SUFFIXES",
    "METADATA_KEY",
    "FileRun",
    "ModelLoadError",
    "ModelMetadata",
    "Prediction",
    "Student",
    "UnreadableImageError",
    "classify_files",
    "image_files",
    "rank",
    "read_image",
    "softmax",
    "to_batch",
    "to_rgb",
]
