"""The deployable student: export a checkpoint to ONNX or TorchScript with its metadata, open
any student file as a predictor, and measure an export's parity with its checkpoint.

The exported ONNX file runs without torch through ``student_runtime`` (onnxruntime, numpy,
Pillow); its metadata schema is ``student_runtime.ModelMetadata``.
"""

from client_distiller.export.exporters import (
    SUFFIXES,
    ExportError,
    ExportFormat,
    export_onnx,
    export_student,
    export_torchscript,
)
from client_distiller.export.loading import (
    CheckpointPredictor,
    FileKind,
    ModelFileError,
    OnnxPredictor,
    Predictor,
    TorchScriptPredictor,
    detect_kind,
    load_checkpoint,
    open_predictor,
)
from client_distiller.export.metadata import file_sha256, metadata_of
from client_distiller.export.parity import (
    FP32_TOLERANCE,
    Parity,
    compare_logits,
    compare_on_images,
    compare_on_random,
)

__all__ = [
    "FP32_TOLERANCE",
    "SUFFIXES",
    "CheckpointPredictor",
    "ExportError",
    "ExportFormat",
    "FileKind",
    "ModelFileError",
    "OnnxPredictor",
    "Parity",
    "Predictor",
    "TorchScriptPredictor",
    "compare_logits",
    "compare_on_images",
    "compare_on_random",
    "detect_kind",
    "export_onnx",
    "export_student",
    "export_torchscript",
    "file_sha256",
    "load_checkpoint",
    "metadata_of",
    "open_predictor",
]
