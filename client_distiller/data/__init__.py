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
    "resolve_dataset",
    "split_domain",
    "to_rgb",
]


def resolve_dataset(data: str, *, verify: bool = True, progress: bool = False) -> DomainFolder:
    """Open ``data`` as a dataset: a folder path, or ``demo`` for the generated demo benchmark."""
    from pathlib import Path

    if data == "demo":
        try:
            from demo_world.assets import ensure_demo_benchmark
        except ImportError as exc:  # the demo world is not built in this checkout
            raise DatasetError(f"the demo benchmark is not available: {exc}") from exc
        return DomainFolder(
            Path(ensure_demo_benchmark(root=None)), verify=verify, progress=progress
        )
    return DomainFolder(Path(data), verify=verify, progress=progress)
