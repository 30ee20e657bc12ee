"""Seeded image sets drawn from the renderer: the teacher's caption corpus, the student's
photo-only pre-training set, and the benchmark's images.

Each image gets its own generator from :func:`demo_world.render.image_rng`, keyed by a *stream*
number, so the three sets never share an image even with the same seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tqdm import tqdm

from demo_world.render import CLASSES, IMAGE_SIZE, STYLES, caption, image_rng, render

#: stream numbers (part of the seed key of every image; fixed design, see issue 4)
STREAM_BENCHMARK = 0
STREAM_CORPUS = 1
STREAM_STUDENT = 2

#: Style mix of the teacher's web corpus: like real web data it is mostly photos
#: (30 %; the other 9 styles share the rest equally).
CORPUS_PHOTO_SHARE = 0.3


def corpus_style_weights(styles: Sequence[str] = tuple(STYLES)) -> np.ndarray:
    """Sampling probability of each style in the teacher's corpus."""
    w = np.array([CORPUS_PHOTO_SHARE if s == "photo" else 0.0 for s in styles])
    rest = [i for i, s in enumerate(styles) if s != "photo"]
    w[rest] = (1 - w.sum()) / len(rest)
    return w / w.sum()


def draw_set(
    n: int,
    seed: int,
    stream: int,
    classes: Sequence[str] = tuple(CLASSES),
    styles: Sequence[str] = tuple(STYLES),
    *,
    with_captions: bool = False,
    style_weights: Sequence[float] | None = None,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Render ``n`` images with class and style drawn uniformly at random.

    Args:
        n: number of images.
        seed: world seed.
        stream: which image set (``STREAM_*``); different streams never share an image.
        classes: class names to draw from.
        styles: style names to draw from.
        with_captions: also write a web-style caption per image.
        style_weights: probability of each style (default uniform).
        progress: show a tqdm bar.

    Returns:
        ``(images uint8 (n, 64, 64, 3), class ids into classes (n,), style ids into styles (n,),
        captions)``; captions is empty unless ``with_captions``.
    """
    pick = np.random.default_rng([seed, stream, 999])
    cls_ids = pick.integers(len(classes), size=n)
    sty_ids = pick.choice(len(styles), size=n, p=style_weights)
    images = np.empty((n, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    captions: list[str] = []
    for i in tqdm(range(n), desc=f"render stream {stream}", disable=not progress, mininterval=2):
        c, s = classes[cls_ids[i]], styles[sty_ids[i]]
        rng = image_rng(seed, stream, s, c, i)
        im, color = render(c, s, rng)
        images[i] = np.asarray(im)
        if with_captions:
            captions.append(caption(c, s, color, rng))
    return images, cls_ids, sty_ids, captions
