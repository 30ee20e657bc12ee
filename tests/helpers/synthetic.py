"""The one synthetic dataset writer of the tests: a small DomainBed-style folder of real PNGs.

Each class is a shape and each domain a drawing style (cycling when there are more than
three): ``flat`` (filled shape on white), ``noisy`` (filled shape on grey with pixel noise),
``outline`` (outline only). Same arguments, same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

DOMAINS = ("flat", "noisy", "outline")
CLASSES = ("circle", "square", "triangle")
_STYLES = ("flat", "noisy", "outline")
_SHAPES = ("circle", "square", "triangle")


def write_domainbed(
    root: Path,
    *,
    domains: Sequence[str] = DOMAINS,
    classes: Sequence[str] = CLASSES,
    per_class: int = 5,
    size: int = 32,
    seed: int = 0,
) -> Path:
    """Write ``root/<domain>/<class>/<n>.png`` and return ``root``.

    Args:
        root: the dataset folder (created).
        domains: domain folder names; the i-th is drawn in style ``i % 3``.
        classes: class folder names; the j-th is shape ``j % 3``.
        per_class: images per class and domain.
        size: image side in pixels (>= 24).
        seed: numpy seed of the shapes' sizes, positions, colours and noise.
    """
    rng = np.random.default_rng(seed)
    for d, domain in enumerate(domains):
        style = _STYLES[d % len(_STYLES)]
        for c, cls in enumerate(classes):
            shape = _SHAPES[c % len(_SHAPES)]
            folder = root / domain / cls
            folder.mkdir(parents=True, exist_ok=True)
            for n in range(per_class):
                background = (90, 90, 90) if style == "noisy" else (255, 255, 255)
                img = Image.new("RGB", (size, size), background)
                draw = ImageDraw.Draw(img)
                r = int(rng.integers(6, 12))
                cx, cy = (int(v) for v in rng.integers(r, size - r, 2))
                box = (cx - r, cy - r, cx + r, cy + r)
                colour = tuple(int(v) for v in rng.integers(0, 200, 3))
                fill = None if style == "outline" else colour
                if shape == "circle":
                    draw.ellipse(box, fill=fill, outline=colour, width=2)
                elif shape == "square":
                    draw.rectangle(box, fill=fill, outline=colour, width=2)
                else:
                    draw.polygon(
                        [(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)],
                        fill=fill,
                        outline=colour,
                        width=2,
                    )
                if style == "noisy":
                    arr = np.asarray(img, dtype=np.int16) + rng.integers(-40, 40, (size, size, 3))
                    img = Image.fromarray(arr.clip(0, 255).astype(np.uint8))
                img.save(folder / f"{n}.png")
    return root
