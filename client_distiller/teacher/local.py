"""The white-box teacher: an open_clip model in this process (VL2V-SD, tests, offline use)."""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Sequence

import numpy as np
from PIL import Image

from client_distiller.teacher.base import (
    BeforeChunk,
    ChunkResult,
    OnChunk,
    WireEncoding,
    run_chunks,
)
from model_io import TINY_MODEL, load_open_clip
from shared_schemas import IMAGES, TEXTS, ModelCard

#: Items per forward pass; also what the card advertises as the request size.
LOCAL_BATCH = 64


class LocalTeacher(WireEncoding):
    """open_clip in process, with the same interface (and the same wire bytes) as the vendor.

    Images go through exactly the bytes the remote teacher would send (resize + PNG), so a cache
    filled by one serves the other when the weights match. ``queries_counted`` counts what the
    calls would have cost at the vendor.

    Args:
        model: open_clip architecture (built-in ``vl2v-tiny``, open_clip's own, or one in
            ``config_dirs``).
        pretrained: open_clip pretrained tag or checkpoint path; None = random weights, seeded
            with 0 so the fingerprint (and thus the cache) is stable across runs.
        config_dirs: folders of open_clip model configs for custom architectures.
        device: torch device.
    """

    def __init__(
        self,
        *,
        model: str = TINY_MODEL,
        pretrained: str | None = None,
        config_dirs: Sequence[str | os.PathLike[str]] = (),
        device: str = "cpu",
    ) -> None:
        # The vendor's loader and card facts, so the two sides describe the same weights alike.
        loaded = load_open_clip(
            model, pretrained=pretrained, config_dirs=config_dirs, device=device
        )
        self.model = loaded.model
        self.preprocess = loaded.preprocess
        self.tokenizer = loaded.tokenizer
        self.device = device
        self.queries_counted = {IMAGES: 0, TEXTS: 0}
        self._lock = threading.Lock()
        self.card: ModelCard = loaded.card(
            description="local open_clip teacher (white-box)",
            max_items_per_request=LOCAL_BATCH,
            max_request_bytes=1 << 30,
        )

    def embed_payloads(
        self,
        endpoint: str,
        payloads: Sequence[bytes] | Sequence[str],
        *,
        before_chunk: BeforeChunk | None = None,
        on_chunk: OnChunk | None = None,
    ) -> np.ndarray | None:
        """Same contract as ``RemoteTeacher.embed_payloads``, computed in process."""
        return run_chunks(
            payloads,
            LOCAL_BATCH,
            lambda start, items: self._forward(endpoint, start, items),
            concurrency=1,
            before_chunk=before_chunk,
            on_chunk=on_chunk,
        )

    def _forward(self, endpoint: str, start: int, items: Sequence) -> ChunkResult:
        import torch

        with self._lock, torch.inference_mode():
            if endpoint == IMAGES:
                imgs = [Image.open(io.BytesIO(b)).convert("RGB") for b in items]
                x = torch.stack([self.preprocess(im) for im in imgs]).to(self.device)
                z = self.model.encode_image(x)
            elif endpoint == TEXTS:
                z = self.model.encode_text(self.tokenizer(list(items)).to(self.device))
            else:
                raise ValueError(f"unknown endpoint {endpoint!r}")
            z = torch.nn.functional.normalize(z.float(), dim=-1)
            self.queries_counted[endpoint] += len(items)
        return ChunkResult(
            start=start, embeddings=z.cpu().numpy().astype(np.float32), charged=len(items)
        )
