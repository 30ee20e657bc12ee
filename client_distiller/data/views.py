"""The teacher view bank: K fixed augmented views per training image.

Each view is a pure function of (bank seed, image id, view index): its random numbers come from
numpy's PCG64 (the same stream on every platform) seeded by a sha256 of those three, and it is
built from deterministic PIL operations only. The same view therefore has the same bytes in
every run, on every machine, and hits the same cache entry: the teacher is paid once per view.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from client_distiller.data.folder import Sample, load_image

#: METHOD.md's train augmentation.
CROP_SCALE = (0.7, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
JITTER = 0.3  # brightness, contrast, saturation and hue, as ColorJitter(0.3, 0.3, 0.3, 0.3)
GRAYSCALE_P = 0.1


def image_id(image: Image.Image) -> str:
    """Content id of an in-memory image (mode, size, pixels)."""
    h = hashlib.sha256(f"{image.mode}:{image.size}".encode())
    h.update(image.tobytes())
    return h.hexdigest()


def _rng(seed: int, ident: str, index: int) -> np.random.Generator:
    digest = hashlib.sha256(f"view:{seed}:{ident}:{index}".encode()).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(digest[:16], "little")))


def _random_resized_crop(img: Image.Image, size: int, rng: np.random.Generator) -> Image.Image:
    """torchvision's RandomResizedCrop sampling (10 tries, then a centre crop)."""
    width, height = img.size
    area = width * height
    log_ratio = (math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]))
    box = None
    for _ in range(10):
        target_area = area * rng.uniform(*CROP_SCALE)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            box = (left, top, left + w, top + h)
            break
    if box is None:  # fall back to the largest centre crop within the ratio range
        in_ratio = width / height
        if in_ratio < CROP_RATIO[0]:
            w, h = width, round(width / CROP_RATIO[0])
        elif in_ratio > CROP_RATIO[1]:
            h, w = height, round(height * CROP_RATIO[1])
        else:
            w, h = width, height
        left, top = (width - w) // 2, (height - h) // 2
        box = (left, top, left + w, top + h)
    return img.resize((size, size), Image.Resampling.BICUBIC, box=box)


def _adjust_hue(img: Image.Image, shift: float) -> Image.Image:
    """Rotate hue by ``shift`` turns (in [-0.5, 0.5]) in 8-bit HSV, as torchvision does."""
    hsv = np.array(img.convert("HSV"), dtype=np.uint8)
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + round(shift * 255)) % 256
    return Image.fromarray(hsv, mode="HSV").convert("RGB")


def _color_jitter(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    order = rng.permutation(4)
    lo, hi = 1 - JITTER, 1 + JITTER
    factors = [
        rng.uniform(lo, hi),
        rng.uniform(lo, hi),
        rng.uniform(lo, hi),
        rng.uniform(-JITTER, JITTER),
    ]
    for op in order:
        f = float(factors[op])
        if op == 0:
            img = ImageEnhance.Brightness(img).enhance(f)
        elif op == 1:
            img = ImageEnhance.Contrast(img).enhance(f)
        elif op == 2:
            img = ImageEnhance.Color(img).enhance(f)
        else:
            img = _adjust_hue(img, f)
    return img


class ViewBank:
    """K deterministic views per image, at the teacher's input size.

    View 0 is the plain resized image (the same bytes as an evaluation query, so it is paid
    once); views 1..K-1 are random-resized crop (scale 0.7-1.0), horizontal flip, colour jitter
    0.3 and grayscale with p=0.1.

    Args:
        k: views per image (>= 1).
        size: output side in pixels (``card.image_size``); the student resizes to its own size.
        seed: bank seed; changing it gives a different (equally valid) set of views.
    """

    def __init__(self, k: int, *, size: int, seed: int = 0) -> None:
        if k < 1:
            raise ValueError(f"need at least one view per image, got {k}")
        if size < 1:
            raise ValueError(f"bad view size {size}")
        self.k = k
        self.size = size
        self.seed = seed

    def view(self, sample_or_image: Sample | Image.Image, index: int) -> Image.Image:
        """View ``index`` (0 <= index < k) of a sample (or an in-memory image)."""
        if isinstance(sample_or_image, Sample):
            return self.make_view(load_image(sample_or_image), sample_or_image.id, index)
        img = sample_or_image.convert("RGB")
        return self.make_view(img, image_id(img), index)

    def views(self, sample: Sample) -> list[Image.Image]:
        """All k views of a sample (the file is decoded once)."""
        img = load_image(sample)
        return [self.make_view(img, sample.id, i) for i in range(self.k)]

    def make_view(self, img: Image.Image, ident: str, index: int) -> Image.Image:
        """View ``index`` of an RGB image whose identity is ``ident``."""
        if not 0 <= index < self.k:
            raise IndexError(f"view index {index} outside 0..{self.k - 1}")
        if img.mode != "RGB":
            img = img.convert("RGB")
        if index == 0:
            return img.resize((self.size, self.size), Image.Resampling.BICUBIC)
        rng = _rng(self.seed, ident, index)
        out = _random_resized_crop(img, self.size, rng)
        if rng.uniform() < 0.5:
            out = ImageOps.mirror(out)
        out = _color_jitter(out, rng)
        if rng.uniform() < GRAYSCALE_P:
            out = out.convert("L").convert("RGB")
        return out
