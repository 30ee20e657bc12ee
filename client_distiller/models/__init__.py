"""Student models."""

from client_distiller.models.student import (
    Student,
    TimmBackbone,
    build_backbone,
    load_student,
    timm_data_config,
    to_tensor_batch,
)

__all__ = [
    "Student",
    "TimmBackbone",
    "build_backbone",
    "load_student",
    "timm_data_config",
    "to_tensor_batch",
]
