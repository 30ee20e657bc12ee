"""Decode and validate request inputs into model tensors (runs in a threadpool, never charged).

Every check here happens before a request is charged, so a client never pays for input the
service refuses.
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings
from collections.abc import Callable
from typing import Any

import torch
from PIL import Image

ALLOWED_FORMATS = {"PNG", "JPEG"}


class InputError(ValueError):
    """A request input the service refuses; ``status`` and ``code`` go to the client."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def decode_image(
    data: str,
    index: int,
    max_pixels: int,
    max_aspect_ratio: float = float("inf"),
    *,
    field: str = "images",
) -> Image.Image:
    """Decode one base64 PNG/JPEG into an RGB image, refusing bombs before decoding pixels.

    Both bounds are read from the header: ``width * height`` bounds the decoded pixels, the
    aspect ratio bounds the image after the model's resize (its short side becomes the model's
    input size, so a 1 x 1,000,000 strip would grow to gigabytes). ``field`` names the
    request's list in the messages (``images`` natively, ``input`` on the OpenAI route).
    """
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(400, "invalid_base64", f"{field}[{index}] is not valid base64") from None
    if not raw:
        raise InputError(400, "invalid_image", f"{field}[{index}] is empty")
    try:
        # Image.open reads only the header: the size check below costs no pixel memory.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(raw))
            if img.format not in ALLOWED_FORMATS:
                raise InputError(
                    400, "unsupported_image", f"{field}[{index}] is {img.format}, not PNG or JPEG"
                )
            width, height = img.size
            if width * height > max_pixels:
                raise InputError(
                    413,
                    "image_too_large",
                    f"{field}[{index}] is {width}x{height}; at most {max_pixels} pixels",
                )
            if max(width, height) > max_aspect_ratio * min(width, height):
                raise InputError(
                    413,
                    "image_too_large",
                    f"{field}[{index}] is {width}x{height}: its aspect ratio exceeds "
                    f"{max_aspect_ratio:g}:1, too large once resized to the model's input",
                )
            img.load()
            return img.convert("RGB")
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(
            413, "image_too_large", f"{field}[{index}] is a decompression bomb"
        ) from None
    except Exception:  # noqa: BLE001 -- PIL raises many types for truncated/garbage data
        raise InputError(
            400, "invalid_image", f"{field}[{index}] is not a readable PNG or JPEG image"
        ) from None


def images_to_tensor(
    images: list[str],
    preprocess: Callable[[Any], torch.Tensor],
    max_pixels: int,
    max_aspect_ratio: float = float("inf"),
    field: str = "images",
) -> torch.Tensor:
    """Decode, validate and preprocess every image; [n, 3, H, W]."""
    return torch.stack(
        [
            preprocess(decode_image(d, i, max_pixels, max_aspect_ratio, field=field))
            for i, d in enumerate(images)
        ]
    )


def texts_to_tensor(
    texts: list[str],
    tokenizer: Callable[[list[str]], torch.Tensor],
    max_chars: int,
    field: str = "texts",
) -> torch.Tensor:
    """Validate and tokenize every text; [n, context_length]."""
    for i, text in enumerate(texts):
        if len(text) > max_chars:
            raise InputError(
                422,
                "text_too_long",
                f"{field}[{i}] has {len(text)} characters; at most {max_chars}",
            )
    return tokenizer(texts)
