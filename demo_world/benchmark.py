"""The demo benchmark: 7 classes x 4 styles, written in the DomainBed layout
``root/<style>/<class>/<n>.png``.

Image ``n`` of (style, class) is rendered from ``image_rng(BENCHMARK_SEED, STREAM_BENCHMARK,
style, class, n)``, so any subset can be regenerated without the others.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from demo_world.corpus import STREAM_BENCHMARK
from demo_world.render import BENCHMARK_CLASSES, BENCHMARK_STYLES, image_rng, render

#: Fixed design (issue 4): 80 images per class per style, seed 2024 -> 2,240 images.
BENCHMARK_SEED = 2024
IMAGES_PER_CLASS = 80
#: Bump when the renderer's output changes; part of the dataset folder name.
BENCHMARK_VERSION = 1
BENCHMARK_NAME = f"vl2v-demo-pacs-v{BENCHMARK_VERSION}"


def png_bytes(style: str, cls: str, index: int, seed: int = BENCHMARK_SEED) -> bytes:
    """The PNG bytes of one benchmark image (deterministic in all arguments)."""
    im, _ = render(cls, style, image_rng(seed, STREAM_BENCHMARK, style, cls, index))
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def load_arrays(
    n_per_class: int = IMAGES_PER_CLASS,
    styles: Sequence[str] = BENCHMARK_STYLES,
    classes: Sequence[str] = BENCHMARK_CLASSES,
    seed: int = BENCHMARK_SEED,
    start: int = 0,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Benchmark images rendered in memory (same pixels as the PNG files).

    Returns:
        ``(images uint8 (n, 64, 64, 3), class ids (n,), style ids (n,))`` with ids indexing
        ``classes`` and ``styles``.
    """
    ims, ys, ss = [], [], []
    jobs = [
        (si, ci, k)
        for si in range(len(styles))
        for ci in range(len(classes))
        for k in range(start, start + n_per_class)
    ]
    for si, ci, k in tqdm(jobs, desc="render benchmark", disable=not progress, mininterval=2):
        im, _ = render(
            classes[ci], styles[si], image_rng(seed, STREAM_BENCHMARK, styles[si], classes[ci], k)
        )
        ims.append(np.asarray(im))
        ys.append(ci)
        ss.append(si)
    return np.stack(ims), np.array(ys), np.array(ss)


def write_benchmark(
    root: Path,
    n_per_class: int = IMAGES_PER_CLASS,
    seed: int = BENCHMARK_SEED,
    progress: bool = True,
) -> Path:
    """Write every benchmark image under ``root`` (which must not exist yet, or be empty)."""
    root = Path(root)
    jobs = [
        (s, c, k) for s in BENCHMARK_STYLES for c in BENCHMARK_CLASSES for k in range(n_per_class)
    ]
    for s, c, k in tqdm(jobs, desc="write benchmark", disable=not progress, mininterval=2):
        d = root / s / c
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{k:04d}.png").write_bytes(png_bytes(s, c, k, seed))
    return root


def write_manifest(
    root: Path, n_per_class: int = IMAGES_PER_CLASS, seed: int = BENCHMARK_SEED
) -> None:
    """Describe the dataset next to its images (read by people, not by code)."""
    info = {
        "name": BENCHMARK_NAME,
        "layout": "<style>/<class>/<n>.png",
        "styles": list(BENCHMARK_STYLES),
        "classes": list(BENCHMARK_CLASSES),
        "images_per_class_per_style": n_per_class,
        "image_size": 64,
        "seed": seed,
        "generator": "demo_world.benchmark.write_benchmark",
    }
    (Path(root) / "DATASET.json").write_text(json.dumps(info, indent=2) + "\n")
