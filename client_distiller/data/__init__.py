"""Data: DomainBed-style folders, leave-one-domain-out splits and the teacher view bank."""

from client_distiller.data.folder import (
    DatasetError,
    DomainFolder,
    Sample,
    SkippedFile,
    class_name_to_text,
    load_image,
    read_image,
    to_rgb,
)
from client_distiller.data.splits import Splits, make_splits, split_domain
from client_distiller.data.views import ViewBank, image_id

__all__ = [
    "DatasetError",
    "DomainFolder",
    "Sample",
    "SkippedFile",
    "Splits",
    "ViewBank",
    "class_name_to_text",
    "image_id",
    "load_image",
    "make_splits",
    "read_image",
    "split_domain",
    "to_rgb",
]
