"""The runtime decodes and resizes images exactly as the checkpoint's ``predict`` does."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from client_distiller.data import folder as client_folder
from client_distiller.data import read_image as client_read_image
from client_distiller.models.student import to_tensor_batch
from student_runtime import IMAGE_SUFFIXES, UnreadableImageError, image_files, read_image, to_batch


def _write(path: Path, image: Image.Image, **save) -> Path:
    image.save(path, **save)
    return path


def _gradient(size: tuple[int, int]) -> np.ndarray:
    w, h = size
    x = np.linspace(0, 255, w, dtype=np.float64)[None, :, None]
    y = np.linspace(0, 255, h, dtype=np.float64)[:, None, None]
    return np.concatenate([x + 0 * y, y + 0 * x, (x + y) / 2], axis=2).astype(np.uint8)


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    """One file per image mode the client's reader treats specially."""
    rgb = Image.fromarray(_gradient((40, 30)))
    rgba = rgb.convert("RGBA")
    rgba.putalpha(Image.fromarray(np.tile(np.linspace(0, 255, 40, dtype=np.uint8), (30, 1))))
    palette = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.info["transparency"] = 3
    wide = Image.fromarray((np.arange(40 * 30, dtype=np.uint16).reshape(30, 40) * 50).astype(">u2"))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees on display
    animated = [Image.fromarray(_gradient((24, 24))), Image.new("RGB", (24, 24), "red")]
    out = [
        _write(tmp_path / "rgb.png", rgb),
        _write(tmp_path / "same-size.png", Image.fromarray(_gradient((32, 32)))),
        _write(tmp_path / "rgba.png", rgba),
        _write(tmp_path / "palette.png", palette, transparency=3),
        _write(tmp_path / "gray.png", rgb.convert("L")),
        _write(tmp_path / "gray-alpha.png", rgba.convert("LA")),
        _write(tmp_path / "sixteen.png", wide),
        _write(tmp_path / "cmyk.jpg", rgb.convert("CMYK")),
        _write(tmp_path / "rotated.jpg", rgb, exif=exif),
        tmp_path / "animated.gif",
    ]
    animated[0].save(out[-1], save_all=True, append_images=animated[1:])
    return out


def test_runtime_arrays_equal_the_checkpoints_inputs(images: list[Path]) -> None:
    for size in (32, 17):
        ours = to_batch([read_image(p) for p in images], size)
        theirs = to_tensor_batch([client_read_image(p) for p in images], size).float() / 255.0
        assert ours.dtype == np.float32 and ours.shape == (len(images), 3, size, size)
        assert np.array_equal(ours, theirs.numpy()), size  # bit for bit, not approximately
    # The cases differ from a plain convert("RGB"): the check above compares real work.
    rotated = read_image(images[8])
    assert rotated.size == (30, 40)
    assert read_image(images[2]).getpixel((0, 0)) == (255, 255, 255)  # alpha 0 -> white


def test_an_open_image_and_its_file_give_the_same_input(images: list[Path]) -> None:
    from student_runtime.images import as_image

    for path in images[:3]:
        with Image.open(path) as im:
            im.load()
            opened = as_image(im.convert("RGBA") if path.name == "rgba.png" else im)
        assert np.array_equal(to_batch([opened], 32), to_batch([read_image(path)], 32))


def test_unreadable_files_raise_one_error_type(tmp_path: Path) -> None:
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    truncated = tmp_path / "truncated.png"
    buf = io.BytesIO()
    Image.fromarray(_gradient((40, 30))).save(buf, format="PNG")
    truncated.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    for path in (junk, truncated, tmp_path / "missing.png"):
        with pytest.raises(UnreadableImageError) as info:
            read_image(path)
        assert info.value.path == path and str(path) in str(info.value)


def test_image_files_walks_folders_in_order(tmp_path: Path) -> None:
    for rel in ("b/2.PNG", "b/1.jpg", "a/x/3.webp", "a/notes.txt", ".hidden/4.png", "a/.5.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    explicit = tmp_path / "a" / "notes.txt"  # named explicitly: tried whatever its suffix
    found = list(image_files([tmp_path, explicit]))
    assert found == [
        tmp_path / "a" / "x" / "3.webp",
        tmp_path / "b" / "1.jpg",
        tmp_path / "b" / "2.PNG",
        explicit,
    ]


def test_the_runtime_reads_the_suffixes_the_client_reads() -> None:
    assert client_folder.IMAGE_SUFFIXES == IMAGE_SUFFIXES
