"""The one small interface every algorithm implements (DomainBed style).

``build(ctx)`` -> ``begin_stage(stage, ...)`` -> ``update(batch)`` many times -> ``predict(x)``.
Variants override one or two methods (``loss``, ``trainable``, ``stages``), never the loop.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from client_distiller.models.student import Student, build_backbone


@dataclass
class HParams:
    """Training hyper-parameters shared by all algorithms (defaults sized for the demo)."""

    lr: float = 1e-3
    align_lr: float = 1e-3
    weight_decay: float = 0.0
    lam: float = 0.5
    kd_temperature: float = 4.0  # at CLIP's logit scale of 100 (losses.kd_temperature)
    kd_alpha: float = 1.0
    # BatchNorm statistics stay as pretrained in every stage of every algorithm (the method's
    # reference code freezes them; its affine weights still train where their module does).
    freeze_bn: bool = True


@dataclass
class Batch:
    """One training or evaluation batch.

    Attributes:
        x: images in [0, 1], (n, 3, H, W) at the student's input size.
        y: class indices, (n,).
        t_img: the teacher's image embeddings of exactly these views, (n, d), or None.
        index: row of each image in the training pairs (lets Align use cached features).
    """

    x: torch.Tensor
    y: torch.Tensor
    t_img: torch.Tensor | None = None
    index: torch.Tensor | None = None


@dataclass
class BuildContext:
    """What an algorithm needs to build its student; nothing here queries the teacher.

    Attributes:
        classes: class names (folder names).
        class_text: the teacher's class text embeddings, (C, d).
        logit_scale: the teacher's logit scale.
        prompts: prompt templates used for ``class_text``.
        teacher_fingerprint: sha256 of the teacher's weights (from its card).
        backbone_spec: the student backbone (see ``build_backbone``).
        pretrained: load the backbone's pretrained weights.
        input_size, mean, std: the student's preprocessing.
        teacher_visual: a white-box teacher's image tower (VL2V-SD only).
        teacher_spec: ``{"name", "image_size", "mean", "std"}`` of the teacher (VL2V-SD only).
    """

    classes: Sequence[str]
    class_text: torch.Tensor
    logit_scale: float
    prompts: Sequence[str] = ()
    teacher_fingerprint: str | None = None
    backbone_spec: dict[str, Any] = field(default_factory=lambda: {"kind": "demo"})
    pretrained: bool = True
    input_size: int = 64
    mean: Sequence[float] = (0.5, 0.5, 0.5)
    std: Sequence[float] = (0.5, 0.5, 0.5)
    teacher_visual: nn.Module | None = None
    teacher_spec: dict[str, Any] | None = None


class Algorithm:
    """Base class: full fine-tuning of a student with a loss the variant defines.

    Attributes:
        stages: training stages, run in order by ``client_distiller.train.train``.
        head: the student's head kind (``"text"`` or ``"linear"``).
        needs_teacher_images: training reads the teacher's image embedding of every view.
    """

    stages: tuple[str, ...] = ("train",)
    head: str = "linear"
    needs_teacher_images: bool = False

    def __init__(self, student: Student | None, hp: HParams, ctx: BuildContext) -> None:
        self.student = student
        self.hp = hp
        self.ctx = ctx
        self.stage: str | None = None
        self.optimizer: torch.optim.Optimizer | None = None

    # ---- build -----------------------------------------------------------------------------

    @classmethod
    def build(cls, ctx: BuildContext, hp: HParams | None = None) -> Algorithm:
        """Build the algorithm and its student from a context."""
        return cls(cls.build_student(ctx), hp or HParams(), ctx)

    @classmethod
    def build_student(cls, ctx: BuildContext) -> Student | None:
        """The default student: pretrained backbone -> projection -> head of ``cls.head``."""
        backbone, feature_dim = build_backbone(ctx.backbone_spec, pretrained=ctx.pretrained)
        return Student(
            backbone,
            backbone_spec=ctx.backbone_spec,
            feature_dim=feature_dim,
            classes=ctx.classes,
            head=cls.head,  # type: ignore[arg-type]
            class_text=ctx.class_text,
            logit_scale=ctx.logit_scale,
            input_size=ctx.input_size,
            mean=ctx.mean,
            std=ctx.std,
            prompts=ctx.prompts,
            teacher_fingerprint=ctx.teacher_fingerprint,
        )

    # ---- stages ----------------------------------------------------------------------------

    def trainable(self, stage: str) -> list[nn.Module]:
        """Modules trained in ``stage``; everything else is frozen (default: the whole student)."""
        assert self.student is not None
        return [self.student]

    def begin_stage(self, stage: str, *, workdir: Path, train_x: torch.Tensor | None) -> None:
        """Freeze what ``stage`` does not train and create a fresh Adam optimizer.

        Args:
            stage: one of ``self.stages``.
            workdir: where stage checkpoints live.
            train_x: all training images (uint8), for stages that precompute features.
        """
        assert self.student is not None
        self.stage = stage
        self.student.requires_grad_(False)
        modules = self.trainable(stage)
        for module in modules:
            module.requires_grad_(True)
        self.train_mode()
        params = [p for m in modules for p in m.parameters() if p.requires_grad]
        lr = self.hp.align_lr if stage == "align" else self.hp.lr
        self.optimizer = torch.optim.Adam(params, lr=lr, weight_decay=self.hp.weight_decay)

    def train_mode(self) -> None:
        """Put the student in the current stage's mode: what the stage trains in train mode,
        the rest in eval mode, and BatchNorm in eval mode when ``hp.freeze_bn``."""
        assert self.student is not None
        self.student.eval()
        if self.stage is None:
            return
        for module in self.trainable(self.stage):
            module.train()
        if self.hp.freeze_bn:
            for module in self.student.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()

    def loss(self, batch: Batch) -> torch.Tensor:
        """The training loss of one batch (variants override this)."""
        raise NotImplementedError

    def update(self, batch: Batch) -> dict[str, float]:
        """One optimizer step on ``batch``; returns the logged scalars."""
        assert self.optimizer is not None, "begin_stage() first"
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss(batch)
        loss.backward()
        self.optimizer.step()
        return {"loss": float(loss.detach())}

    # ---- inference -------------------------------------------------------------------------

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits of images in [0, 1]."""
        assert self.student is not None
        was_training = self.student.training
        self.student.eval()
        logits = self.student(x)
        if was_training:
            self.train_mode()
        return logits

    def predict_batch(self, batch: Batch) -> torch.Tensor:
        """Logits of an evaluation batch (zero-shot reads the teacher embeddings instead)."""
        return self.predict(batch.x)

    # ---- state -----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, torch.Tensor]:
        """A detached copy of the student's weights."""
        assert self.student is not None
        return copy.deepcopy(self.student.state_dict())

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore the student's weights."""
        assert self.student is not None
        self.student.load_state_dict(state)

    def save_stage(self, path: Path, stage: str) -> Path:
        """Write the student after ``stage`` as a self-contained checkpoint."""
        assert self.student is not None
        return self.student.save(path, stage=stage, algorithm=type(self).__name__)

    def load_stage(self, path: Path) -> None:
        """Load a previous stage's checkpoint explicitly.

        Raises:
            FileNotFoundError: with the path and what produces it, instead of silently going on
                with untrained weights (the reference code's failure mode).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"stage checkpoint {path} is missing: the previous stage must run first "
                f"(it writes this file)"
            )
        payload = torch.load(path, map_location="cpu", weights_only=True)
        self.load_state_dict(payload["state_dict"])
