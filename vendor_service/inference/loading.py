"""Load an open_clip model for serving and describe it (the model card's facts)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from model_io import state_dict_fingerprint
from vendor_service.settings import ModelSettings

BUILD_TEACHER_COMMAND = "python -m demo_world build-teacher"


class ModelUnavailable(RuntimeError):
    """The requested weights cannot be loaded (missing file, unknown tag, ...)."""


@dataclass
class LoadedModel:
    """A served model plus what the card and the preprocessing need to know about it."""

    name: str
    pretrained: str | None  # tag, or checkpoint file name (never a full local path)
    trained: bool
    model: torch.nn.Module
    preprocess: Callable[[Any], torch.Tensor]  # PIL image -> [3, H, W]
    tokenizer: Callable[[list[str]], torch.Tensor]  # texts -> [n, context_length]
    fingerprint: str
    embed_dim: int
    image_size: int
    image_mean: list[float]
    image_std: list[float]
    context_length: int
    logit_scale: float


def resolve_pretrained(settings: ModelSettings) -> str | None:
    """The ``pretrained=`` argument: explicit tag/path, the demo checkpoint, or None (random)."""
    from demo_world.assets import DEMO_TEACHER_MODEL, demo_teacher_checkpoint

    if settings.pretrained:
        return settings.pretrained
    if settings.name == DEMO_TEACHER_MODEL:
        path = demo_teacher_checkpoint()
        if not path.is_file():
            raise ModelUnavailable(
                f"the default model {DEMO_TEACHER_MODEL!r} needs its checkpoint {path}, which "
                f"does not exist; build it with `{BUILD_TEACHER_COMMAND}`, or serve another "
                "model (e.g. `--model vl2v-tiny` for random test weights)"
            )
        return str(path)
    return None


def check_model_available(settings: ModelSettings) -> None:
    """Fail fast (before workers start) on an unknown architecture or a missing weights file."""
    import open_clip

    from demo_world.models import register_open_clip_configs

    register_open_clip_configs()
    pretrained = resolve_pretrained(settings)
    if settings.name not in open_clip.list_models():
        raise ModelUnavailable(f"unknown open_clip architecture {settings.name!r}")
    looks_like_path = pretrained is not None and (
        os.sep in pretrained or pretrained.endswith((".pt", ".pth", ".bin", ".safetensors"))
    )
    if looks_like_path and not Path(pretrained).is_file():
        raise ModelUnavailable(f"checkpoint file {pretrained} does not exist")


def load_model(settings: ModelSettings) -> LoadedModel:
    """Create the model through ``open_clip.create_model_and_transforms`` and describe it."""
    import open_clip

    from demo_world.models import register_open_clip_configs

    register_open_clip_configs()
    pretrained = resolve_pretrained(settings)
    if settings.name not in open_clip.list_models():
        raise ModelUnavailable(f"unknown open_clip architecture {settings.name!r}")
    try:
        # Random weights (test models) are seeded: otherwise each worker process and each
        # restart serves a different model (fingerprint), and clients re-buy their whole cache.
        with torch.random.fork_rng(devices=[]):
            if pretrained is None:
                torch.manual_seed(0)
            model, _, preprocess = open_clip.create_model_and_transforms(
                settings.name, pretrained=pretrained, device=settings.device, precision="fp32"
            )
    except Exception as exc:  # open_clip raises RuntimeError/OSError/... for bad weights
        raise ModelUnavailable(f"could not load {settings.name!r} ({pretrained}): {exc}") from exc
    model.eval().requires_grad_(False)
    tokenizer = open_clip.get_tokenizer(settings.name)

    cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
    size = cfg.get("size", getattr(model.visual, "image_size", 224))
    image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
    mean = list(
        cfg.get("mean", getattr(model.visual, "image_mean", None) or open_clip.OPENAI_DATASET_MEAN)
    )
    std = list(
        cfg.get("std", getattr(model.visual, "image_std", None) or open_clip.OPENAI_DATASET_STD)
    )
    context_length = int(
        getattr(tokenizer, "context_length", None) or getattr(model, "context_length", 77)
    )
    with torch.inference_mode():
        embed_dim = int(model.encode_text(tokenizer(["a"])).shape[-1])
    label = None
    if pretrained is not None:
        path = Path(pretrained)
        label = path.name if path.is_file() else pretrained
    return LoadedModel(
        name=settings.name,
        pretrained=label,
        trained=pretrained is not None,
        model=model,
        preprocess=preprocess,
        tokenizer=tokenizer,
        fingerprint=state_dict_fingerprint(model),
        embed_dim=embed_dim,
        image_size=image_size,
        image_mean=[float(x) for x in mean],
        image_std=[float(x) for x in std],
        context_length=context_length,
        logit_scale=float(model.logit_scale.exp().item()),
    )
