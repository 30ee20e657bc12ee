"""The student: backbone -> projection into CLIP space -> frozen text head (or a linear head).

A student is saved as ONE self-contained checkpoint: the backbone's architecture and weights,
the projection, the head (class text embeddings and logit scale, or a linear layer), the class
names, the prompts, the teacher's fingerprint and the preprocessing (input size, mean, std).
``load_student`` rebuilds it from that file alone, without the teacher and without pretrained
weights, so ``client-distiller predict`` and ``evaluate`` never query anybody.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from client_distiller.losses import zeroshot_logits
from model_io import atomic_save, register_model_configs

CHECKPOINT_FORMAT = "vl2v-student/1"
HeadKind = Literal["text", "linear"]


@dataclass(frozen=True)
class TimmBackbone:
    """A timm architecture as the student's backbone: what ``client-distiller run`` trains.

    Pretrained weights come through timm's own loading path: ``pretrained_cfg_overlay`` may
    point timm at a local weights file and describe it (``{"file": path, "num_classes": ...,
    "input_size": ..., "mean": ..., "std": ...}``), so no download is needed.

    Attributes:
        name: timm model name.
        pretrained_cfg_overlay: timm's ``pretrained_cfg_overlay`` (None: timm's own weights).
        kwargs: more ``timm.create_model`` arguments (stored in every checkpoint).
        label: how results and checkpoint folders name this backbone (default: ``spec()``);
            e.g. ``{"kind": "demo"}`` for the demo student.
    """

    name: str
    pretrained_cfg_overlay: Mapping[str, Any] | None = None
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    label: Mapping[str, Any] | None = None

    def build(self, *, pretrained: bool) -> tuple[nn.Module, int]:
        """The backbone (no classifier) and its output feature dimension."""
        import timm

        extra = dict(self.kwargs)
        if self.pretrained_cfg_overlay is not None:
            extra["pretrained_cfg_overlay"] = dict(self.pretrained_cfg_overlay)
        model = timm.create_model(self.name, pretrained=pretrained, num_classes=0, **extra)
        return model, _timm_output_dim(model)

    def spec(self) -> dict[str, Any]:
        """What a checkpoint stores: enough to rebuild the architecture with timm alone (the
        weights are in the checkpoint; where they were pretrained is not needed)."""
        spec: dict[str, Any] = {"kind": "timm", "name": self.name}
        if self.kwargs:
            spec["kwargs"] = dict(self.kwargs)
        return spec

    def describe(self) -> dict[str, Any]:
        """How results and the checkpoint-folder hash name this backbone."""
        return dict(self.label) if self.label is not None else self.spec()

    def data_config(self) -> dict[str, Any]:
        """Input size, mean and std the backbone was pretrained with (builds it untrained)."""
        backbone, _ = self.build(pretrained=False)
        return timm_data_config(backbone)


def build_backbone(
    spec: Mapping[str, Any],
    *,
    clip_config_dirs: Sequence[str | os.PathLike[str]] = (),
) -> tuple[nn.Module, int]:
    """Rebuild a checkpoint's backbone (untrained) from the spec it stores.

    Spec kinds:
      * ``{"kind": "timm", "name": ..., "kwargs": {...}}``: ``timm.create_model(num_classes=0)``.
      * ``{"kind": "open_clip_visual", "name": ...}``: the image tower of an open_clip
        architecture (VL2V-SD); the name must be one open_clip knows: its own, the project's
        built-in ones (``model_io``), or one in ``clip_config_dirs``.

    Args:
        spec: the architecture description stored in every checkpoint.
        clip_config_dirs: folders of open_clip model configs to register first.

    Returns:
        The backbone and its output feature dimension.

    Raises:
        ValueError: an unknown kind, or an open_clip architecture open_clip does not know.
    """
    kind = spec["kind"]
    if kind == "timm":
        return TimmBackbone(spec["name"], kwargs=spec.get("kwargs", {})).build(pretrained=False)
    if kind == "open_clip_visual":
        import open_clip

        register_model_configs(clip_config_dirs)
        if spec["name"] not in open_clip.list_models():
            raise ValueError(
                f"the checkpoint's backbone is the image tower of the open_clip architecture "
                f"{spec['name']!r}, which open_clip does not know: pass the folder of its "
                f"config (--clip-config-dirs)"
            )
        # Weights come from the checkpoint (or from the teacher the caller copies).
        clip = open_clip.create_model(spec["name"], pretrained=None)
        visual = clip.visual
        return visual, int(visual.output_dim)
    raise ValueError(f"unknown backbone kind {kind!r}")


def _timm_output_dim(model: nn.Module) -> int:
    # With num_classes=0 timm returns the pre-logits features; for models with a conv head
    # after pooling (MobileNetV3) that is head_hidden_size, not num_features.
    return int(getattr(model, "head_hidden_size", None) or model.num_features)


def timm_data_config(backbone: nn.Module) -> dict[str, Any]:
    """Input size, mean and std a timm backbone was pretrained with."""
    cfg = getattr(backbone, "pretrained_cfg", {}) or {}
    return {
        "input_size": int(cfg.get("input_size", (3, 224, 224))[-1]),
        "mean": list(cfg.get("mean", (0.485, 0.456, 0.406))),
        "std": list(cfg.get("std", (0.229, 0.224, 0.225))),
    }


class Student(nn.Module):
    """Backbone ``f``, projection ``P`` and a head.

    ``head="text"``: ``logits_c = s * cos(P f(x), T_c)`` with the frozen class text embeddings
    ``T`` (a buffer, never trained) and the teacher's logit scale ``s`` (ADiP, SD).
    ``head="linear"``: a new ``Linear(features, C)`` on ``f(x)`` (ERM, KD).

    Inputs are float images in [0, 1] at ``input_size``; normalization happens inside, so the
    checkpoint carries its own preprocessing.
    """

    def __init__(
        self,
        backbone: nn.Module,
        *,
        backbone_spec: Mapping[str, Any],
        feature_dim: int,
        classes: Sequence[str],
        head: HeadKind = "text",
        class_text: torch.Tensor | None = None,
        logit_scale: float = 100.0,
        project: bool = True,
        input_size: int = 224,
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225),
        prompts: Sequence[str] = (),
        teacher_fingerprint: str | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.backbone_spec = dict(backbone_spec)
        self.classes = list(classes)
        self.head_kind: HeadKind = head
        self.prompts = list(prompts)
        self.teacher_fingerprint = teacher_fingerprint
        self.input_size = int(input_size)
        self.logit_scale = float(logit_scale)
        self.register_buffer("mean", torch.tensor(list(mean)).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(list(std)).view(1, 3, 1, 1))
        if head == "text":
            if class_text is None:
                raise ValueError("a text head needs the class text embeddings")
            text = F.normalize(torch.as_tensor(class_text, dtype=torch.float32), dim=-1)
            self.register_buffer("class_text", text)  # (C, d), frozen: a buffer, not a param
            embed_dim = text.shape[1]
            # SD's backbone already maps into CLIP space: no projection there.
            self.projection: nn.Module = (
                nn.Linear(feature_dim, embed_dim) if project else nn.Identity()
            )
            self.classifier: nn.Module | None = None
        else:
            self.projection = nn.Identity()
            self.classifier = nn.Linear(feature_dim, len(self.classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features ``f(x)`` of images in [0, 1]."""
        return self.backbone((x - self.mean) / self.std)

    def head(self, feats: torch.Tensor) -> torch.Tensor:
        """Class logits from backbone features."""
        if self.head_kind == "text":
            return zeroshot_logits(self.projection(feats), self.class_text, self.logit_scale)
        assert self.classifier is not None
        return self.classifier(feats)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Projected (unnormalized) embedding ``P f(x)`` in the teacher's space."""
        return self.projection(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    # ---- checkpoint ------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """Everything but the tensors needed to rebuild this student."""
        return {
            "backbone": self.backbone_spec,
            "feature_dim": self.feature_dim,
            "classes": self.classes,
            "head": self.head_kind,
            "project": not isinstance(self.projection, nn.Identity),
            "logit_scale": self.logit_scale,
            "input_size": self.input_size,
            "mean": self.mean.flatten().tolist(),
            "std": self.std.flatten().tolist(),
            "prompts": self.prompts,
            "teacher_fingerprint": self.teacher_fingerprint,
        }

    @property
    def feature_dim(self) -> int:
        if self.classifier is not None:
            return self.classifier.in_features
        if isinstance(self.projection, nn.Linear):
            return self.projection.in_features
        return int(self.class_text.shape[1])

    def save(self, path: str | os.PathLike, **extra: Any) -> Path:
        """Write the self-contained checkpoint atomically (tmp file + rename)."""
        payload = {
            "format": CHECKPOINT_FORMAT,
            "config": self.config(),
            "state_dict": self.state_dict(),
            "extra": extra,
        }
        return atomic_save(payload, path)

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """PIL images -> float tensor in [0, 1] at this student's input size."""
        return to_tensor_batch(images, self.input_size).float() / 255.0


def load_student(
    path: str | os.PathLike[str], *, clip_config_dirs: Sequence[str | os.PathLike[str]] = ()
) -> Student:
    """Rebuild a student from its checkpoint alone (no pretrained download, no teacher).

    A timm student needs timm only. A VL2V-SD student (an open_clip image tower) needs its
    architecture known to open_clip: built in, or from a folder in ``clip_config_dirs``.

    Raises:
        FileNotFoundError: the checkpoint does not exist.
        ValueError: the file is not a student checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"student checkpoint not found: {path}")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a {CHECKPOINT_FORMAT} checkpoint")
    cfg = payload["config"]
    backbone, feature_dim = build_backbone(cfg["backbone"], clip_config_dirs=clip_config_dirs)
    state = payload["state_dict"]
    student = Student(
        backbone,
        backbone_spec=cfg["backbone"],
        feature_dim=feature_dim,
        classes=cfg["classes"],
        head=cfg["head"],
        class_text=state.get("class_text"),
        logit_scale=cfg["logit_scale"],
        project=cfg["project"],
        input_size=cfg["input_size"],
        mean=cfg["mean"],
        std=cfg["std"],
        prompts=cfg["prompts"],
        teacher_fingerprint=cfg["teacher_fingerprint"],
    )
    student.load_state_dict(state)
    student.eval()
    return student


def to_tensor_batch(images: Sequence[Image.Image], size: int) -> torch.Tensor:
    """Resize PIL images to ``size`` x ``size`` RGB and stack them as uint8 (n, 3, size, size)."""
    arrays = []
    for img in images:
        img = img.convert("RGB")
        if img.size != (size, size):
            img = img.resize((size, size), Image.Resampling.BILINEAR)
        arrays.append(np.asarray(img, dtype=np.uint8))
    if not arrays:
        return torch.empty((0, 3, size, size), dtype=torch.uint8)
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
