"""Fixtures of the client tests: small real image folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

DOMAINS = ("cartoon", "photo", "sketch")
CLASSES = ("fish", "hot_air_balloon", "tree")


def make_dataset(root: Path, *, per_class: int = 4, size: int = 24, seed: int = 0) -> Path:
    """Write ``root/<domain>/<class>/<i>.png``: small, distinct, real PNG files."""
    rng = np.random.default_rng(seed)
    for d, domain in enumerate(DOMAINS):
        for c, cls in enumerate(CLASSES):
            folder = root / domain / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                bg = tuple(int(x) for x in rng.integers(0, 256, 3))
                img = Image.new("RGB", (size + 4 * d, size), bg)
                draw = ImageDraw.Draw(img)
                x0, y0 = (int(v) for v in rng.integers(0, size // 2, 2))
                fill = tuple(int(x) for x in rng.integers(0, 256, 3))
                [draw.ellipse, draw.rectangle, draw.pieslice][c](
                    (x0, y0, x0 + size // 2, y0 + size // 2),
                    fill=fill,
                    **({"start": 0, "end": 270} if c == 2 else {}),
                )
                img.save(folder / f"{i:03d}.png")
    return root


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    """3 domains x 3 classes x 4 images (36 PNG files)."""
    return make_dataset(tmp_path / "data")
