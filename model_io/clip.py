"""The one way an open_clip model is loaded and described, on both sides of the wire.

The vendor serves what :func:`load_open_clip` returns and the client's white-box teacher runs
it in process; both describe it with the same :class:`ModelFacts`, so a model card (and the
fingerprint every cache is keyed on) cannot differ between them for the same weights.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model_io.fingerprint import state_dict_fingerprint
from shared_schemas import ModelCard

if TYPE_CHECKING:
    import torch

#: open_clip configs that ship with the product: ``vl2v-tiny``, a random-weight architecture
#: for tests and smoke runs. Always registered, so it needs no config dir.
BUILTIN_CONFIG_DIR = Path(__file__).parent / "model_configs"
TINY_MODEL = "vl2v-tiny"

_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")
_registered: set[Path] = set()
_lock = threading.Lock()  # the vendor loads in a threadpool; open_clip's registry is global


class ModelLoadError(RuntimeError):
    """The model cannot be loaded: unknown architecture, missing or unreadable weights."""


def register_model_configs(config_dirs: Iterable[str | os.PathLike[str]] = ()) -> None:
    """Make open_clip know the built-in architectures and those in ``config_dirs``.

    Idempotent per directory (open_clip rescans every registered path on each addition).

    Args:
        config_dirs: folders of open_clip model config files (``<architecture>.json``).

    Raises:
        FileNotFoundError: a folder does not exist (a typo would otherwise surface later as an
            unknown architecture).
    """
    import open_clip

    folders = [BUILTIN_CONFIG_DIR, *(Path(d).expanduser() for d in config_dirs)]
    for folder in folders:
        if not folder.is_dir():
            raise FileNotFoundError(f"open_clip config folder not found: {folder}")
    with _lock:
        for folder in folders:
            folder = folder.resolve()
            if folder not in _registered:
                open_clip.add_model_config(folder)
                _registered.add(folder)


def check_loadable(
    name: str,
    *,
    pretrained: str | None = None,
    config_dirs: Iterable[str | os.PathLike[str]] = (),
) -> None:
    """Fail fast, without building the model, on an unknown architecture or a missing file.

    Raises:
        ModelLoadError: with a message that says which of the two.
    """
    import open_clip

    try:
        register_model_configs(config_dirs)
    except FileNotFoundError as exc:
        raise ModelLoadError(str(exc)) from exc
    if name not in open_clip.list_models():
        raise ModelLoadError(
            f"unknown open_clip architecture {name!r} (a custom one needs its config dir)"
        )
    looks_like_path = pretrained is not None and (
        os.sep in pretrained or pretrained.endswith(_CHECKPOINT_SUFFIXES)
    )
    if pretrained is not None and looks_like_path and not Path(pretrained).is_file():
        raise ModelLoadError(f"checkpoint file {pretrained} does not exist")


@dataclass(frozen=True, eq=False)
class ModelFacts:
    """What a model card states about the weights themselves (no prices, no limits)."""

    name: str  #: open_clip architecture
    pretrained: str | None  #: the tag, or the checkpoint's file name (never a local path)
    trained: bool  #: False for random (seeded) weights
    fingerprint: str  #: :func:`~model_io.state_dict_fingerprint` of the weights
    embed_dim: int
    image_size: int
    image_mean: tuple[float, ...]
    image_std: tuple[float, ...]
    context_length: int
    logit_scale: float  #: exp of the model's learned logit scale, e.g. 100

    def card(
        self,
        *,
        description: str,
        price_per_image_query: float = 0.0,
        price_per_text_query: float = 0.0,
        max_items_per_request: int,
        max_request_bytes: int,
    ) -> ModelCard:
        """The model card: these facts plus what the server (or local stand-in) decides."""
        return ModelCard(
            id=self.name,
            pretrained=self.pretrained,
            trained=self.trained,
            description=description,
            fingerprint=self.fingerprint,
            embed_dim=self.embed_dim,
            image_size=self.image_size,
            image_mean=list(self.image_mean),
            image_std=list(self.image_std),
            context_length=self.context_length,
            logit_scale=self.logit_scale,
            price_per_image_query=price_per_image_query,
            price_per_text_query=price_per_text_query,
            max_items_per_request=max_items_per_request,
            max_request_bytes=max_request_bytes,
        )


@dataclass(frozen=True, eq=False)
class OpenClipModel(ModelFacts):
    """A loaded open_clip model (eval mode, no gradients) with its facts."""

    model: torch.nn.Module
    preprocess: Callable[[Any], torch.Tensor]  #: PIL image -> [3, H, W]
    tokenizer: Callable[[list[str]], torch.Tensor]  #: texts -> [n, context_length] token ids


def load_open_clip(
    name: str,
    *,
    pretrained: str | None = None,
    config_dirs: Iterable[str | os.PathLike[str]] = (),
    device: str = "cpu",
) -> OpenClipModel:
    """``open_clip.create_model_and_transforms`` in float32, frozen, and described.

    Random weights (``pretrained=None``) are drawn with seed 0 in a forked RNG: every process
    that loads a test model gets the same weights, hence the same fingerprint (otherwise each
    vendor worker and each restart would serve another model and clients re-buy their cache),
    and the caller's RNG state is untouched.

    Args:
        name: open_clip architecture (built-in, in ``config_dirs``, or open_clip's own).
        pretrained: open_clip pretrained tag (``openai``) or checkpoint path; None = random.
        config_dirs: extra folders of open_clip model configs to register first.
        device: torch device of the model.

    Raises:
        ModelLoadError: unknown architecture, missing file or weights open_clip rejects.
    """
    import open_clip
    import torch

    check_loadable(name, pretrained=pretrained, config_dirs=config_dirs)
    torch.set_flush_denormal(True)  # random-weight models crawl on denormals otherwise
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model, _, preprocess = open_clip.create_model_and_transforms(
                name, pretrained=pretrained, device=device, precision="fp32"
            )
    except Exception as exc:  # open_clip raises RuntimeError/OSError/... for bad weights
        raise ModelLoadError(f"could not load {name!r} ({pretrained}): {exc}") from exc
    model.eval().requires_grad_(False)
    tokenizer = open_clip.get_tokenizer(name)
    return OpenClipModel(
        model=model,
        preprocess=preprocess,
        tokenizer=tokenizer,
        **_facts(model, tokenizer, name=name, pretrained=pretrained, device=device),
    )


def _facts(
    model: Any, tokenizer: Any, *, name: str, pretrained: str | None, device: str
) -> dict[str, Any]:
    import open_clip
    import torch

    visual = model.visual
    cfg = getattr(visual, "preprocess_cfg", None) or {}
    size = cfg.get("size", getattr(visual, "image_size", 224))
    mean = cfg.get("mean", getattr(visual, "image_mean", None) or open_clip.OPENAI_DATASET_MEAN)
    std = cfg.get("std", getattr(visual, "image_std", None) or open_clip.OPENAI_DATASET_STD)
    # The tokenizer's length is the one requests are cut to; the model's is its maximum.
    context_length: Any = getattr(tokenizer, "context_length", None) or getattr(
        model, "context_length", 77
    )
    with torch.inference_mode():
        embed_dim = model.encode_text(tokenizer(["a"]).to(device)).shape[-1]
    label = None
    if pretrained is not None:
        path = Path(pretrained)
        label = path.name if path.is_file() else pretrained
    return {
        "name": name,
        "pretrained": label,
        "trained": pretrained is not None,
        "fingerprint": state_dict_fingerprint(model),
        "embed_dim": int(embed_dim),
        "image_size": int(size[0] if isinstance(size, (tuple, list)) else size),
        "image_mean": tuple(float(x) for x in mean),
        "image_std": tuple(float(x) for x in std),
        "context_length": int(context_length),
        "logit_scale": float(model.logit_scale.exp().item()),
    }
