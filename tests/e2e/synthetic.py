"""A tiny DomainBed-style folder of real PNG files: colour-coded classes in styled domains."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("circle", "square", "triangle")
DOMAINS = ("flat", "noisy", "outline")


def write_tiny_domainbed(root: Path, *, per_class: int = 5, size: int = 32, seed: int = 0) -> Path:
    """Write ``root/<domain>/<class>/<n>.png`` and return ``root``."""
    rng = np.random.default_rng(seed)
    for d, domain in enumerate(DOMAINS):
        for _c, cls in enumerate(CLASSES):
            folder = root / domain / cls
            folder.mkdir(parents=True, exist_ok=True)
            for n in range(per_class):
                img = Image.new("RGB", (size, size), (255, 255, 255) if d != 1 else (90, 90, 90))
                draw = ImageDraw.Draw(img)
                r = int(rng.integers(6, 12))
                cx, cy = (int(v) for v in rng.integers(r, size - r, 2))
                box = (cx - r, cy - r, cx + r, cy + r)
                colour = tuple(int(v) for v in rng.integers(0, 200, 3))
                fill = None if domain == "outline" else colour
                if cls == "circle":
                    draw.ellipse(box, fill=fill, outline=colour, width=2)
                elif cls == "square":
                    draw.rectangle(box, fill=fill, outline=colour, width=2)
                else:
                    draw.polygon(
                        [(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)],
                        fill=fill,
                        outline=colour,
                        width=2,
                    )
                if domain == "noisy":
                    arr = np.asarray(img, dtype=np.int16) + rng.integers(-40, 40, (size, size, 3))
                    img = Image.fromarray(arr.clip(0, 255).astype(np.uint8))
                img.save(folder / f"{n}.png")
    return root
