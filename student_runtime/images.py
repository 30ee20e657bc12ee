"""Images in, arrays out: the same decoding and resizing the student was trained and checked on.

These functions reproduce ``client_distiller.data.read_image`` and
``client_distiller.models.student.to_tensor_batch`` with Pillow and numpy alone (the runtime
must not import the client, torch or timm); ``tests/student_runtime`` checks that both give
identical arrays for every image mode they handle.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

#: What ``Student.predict`` takes: a file path or an already opened image.
ImageInput = str | os.PathLike[str] | Image.Image

#: File suffixes read as images inside a folder (a file named explicitly is always tried).
IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
)


class UnreadableImageError(ValueError):
    """A file that is not a readable image.

    Attributes:
        path: the file.
        reason: the decoder's complaint (``"<ExceptionType>: <message>"``).
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        super().__init__(f"cannot read image {path}: {reason}")
        self.path = Path(path)
        self.reason = reason


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB, as the student's training data was.

    Transparency is composited on white; 16- and 32-bit integer images are scaled to 8 bits
    instead of clipped; float images in [0, 1] are scaled to [0, 255].
    """
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        arr = np.asarray(image, dtype=np.float64)
        if mode == "F" and arr.size and float(np.nanmax(arr)) <= 1.0:
            arr = arr * 255.0
        elif mode != "F" and arr.size and float(arr.max()) > 255:
            arr = arr / 257.0  # 16-bit full range -> 8-bit
        arr = np.clip(np.nan_to_num(arr), 0, 255).round().astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if (mode == "P" and "transparency" in image.info) or mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def read_image(path: str | os.PathLike[str]) -> Image.Image:
    """Open an image file as RGB, fully decoded (the first frame of an animation), EXIF-upright.

    Raises:
        UnreadableImageError: the file is missing or not a readable image.
    """
    try:
        with warnings.catch_warnings():
            # Pillow warns on odd-but-readable files (e.g. palette with transparency bytes).
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                im.seek(0)
                im.load()
                im = ImageOps.exif_transpose(im) or im
                return to_rgb(im).copy()
    except Exception as exc:  # any decoder failure means "not an image"
        raise UnreadableImageError(path, f"{type(exc).__name__}: {exc}") from exc


def as_image(item: ImageInput) -> Image.Image:
    """A path read with :func:`read_image`, or an open image converted with :func:`to_rgb`."""
    if isinstance(item, Image.Image):
        return to_rgb(item)
    return read_image(item)


def to_batch(images: Sequence[Image.Image], size: int) -> np.ndarray:
    """RGB images -> float32 (n, 3, size, size) in [0, 1]: bilinear resize, then / 255."""
    arrays = []
    for img in images:
        img = img.convert("RGB")
        if img.size != (size, size):
            img = img.resize((size, size), Image.Resampling.BILINEAR)
        arrays.append(np.asarray(img, dtype=np.uint8))
    if not arrays:
        return np.empty((0, 3, size, size), dtype=np.float32)
    batch = np.stack(arrays).transpose(0, 3, 1, 2)  # (n, H, W, 3) -> (n, 3, H, W)
    # float32 / float32, as the checkpoint's ``uint8.float() / 255.0``: bit-identical inputs.
    return np.ascontiguousarray(batch, dtype=np.float32) / np.float32(255.0)


def image_files(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    """The files to classify: each path given, and every image file under each folder given.

    A folder is searched recursively in sorted order for files with an image suffix
    (:data:`IMAGE_SUFFIXES`, any case), skipping hidden files and folders; a path that is not a
    folder is yielded as given (a missing or unreadable one is reported when it is read).
    """
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            yield path
            continue
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                    yield Path(root) / name
