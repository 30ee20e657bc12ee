"""The one small interface every algorithm implements (DomainBed style).

An algorithm is one small class: its stages as data (``Stage``: name, what trains, its step
count and learning rate, what it starts from), its loss, and a few facts the experiment runner
reads (``needs_teacher_images``, ``white_box``, ``has_student``, ``describe_student``). The
training loop (``client_distiller.train``) runs the stages, owns the checkpoint paths and loads
what a stage starts from; ``build(ctx)`` -> ``begin_stage(stage)`` -> ``update(batch)`` many
times -> ``predict(x)``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from client_distiller.models.student import Student, TimmBackbone

#: The part of the student a stage trains; everything else is frozen.
Trains = Literal["student", "backbone", "projection"]


@dataclass(frozen=True)
class Stage:
    """One training stage, described as data; the loop runs it.

    Attributes:
        name: the stage's name; the loop writes its checkpoint to ``<workdir>/<name>.pt``.
        trains: what gets gradients (``student``: everything; ``backbone``: f;
            ``projection``: P); the rest is frozen.
        steps: the ``TrainConfig`` field that gives its number of steps.
        lr: the ``HParams`` field that gives its Adam learning rate.
        starts_from: an earlier stage whose checkpoint the loop loads first, explicitly (a
            missing file is an error, never a silent start from untrained weights).
        frozen_features: compute the frozen backbone's features of every training pair once,
            before the first step (the stage then never runs the backbone per step).
    """

    name: str
    trains: Trains = "student"
    steps: Literal["steps", "align_steps"] = "steps"
    lr: Literal["lr", "align_lr"] = "lr"
    starts_from: str | None = None
    frozen_features: bool = False


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


@dataclass(frozen=True)
class WhiteBoxTeacher:
    """A white-box teacher's image tower and how to feed it (VL2V-SD copies it).

    Attributes:
        visual: the teacher's image tower (``open_clip`` model's ``.visual``).
        name: its open_clip architecture (stored in the student checkpoint).
        image_size, mean, std: the teacher's preprocessing (the copy keeps it).
    """

    visual: nn.Module
    name: str
    image_size: int
    mean: Sequence[float]
    std: Sequence[float]


@dataclass
class BuildContext:
    """What an algorithm needs to build its student; nothing here queries the teacher.

    Attributes:
        classes: class names (folder names).
        class_text: the teacher's class text embeddings, (C, d).
        logit_scale: the teacher's logit scale.
        student: the student's backbone architecture and where its pretrained weights are.
        prompts: prompt templates used for ``class_text``.
        teacher_fingerprint: sha256 of the teacher's weights (from its card).
        pretrained: load the backbone's pretrained weights.
        input_size, mean, std: the student's preprocessing.
        white_box: the teacher's image tower (VL2V-SD only).
    """

    classes: Sequence[str]
    class_text: torch.Tensor
    logit_scale: float
    student: TimmBackbone
    prompts: Sequence[str] = ()
    teacher_fingerprint: str | None = None
    pretrained: bool = True
    input_size: int = 64
    mean: Sequence[float] = (0.5, 0.5, 0.5)
    std: Sequence[float] = (0.5, 0.5, 0.5)
    white_box: WhiteBoxTeacher | None = None


class Algorithm:
    """Base class: full fine-tuning of a student with a loss the variant defines.

    Class attributes (the facts the runner and the loop read):
        stages: the training stages, in order (empty: nothing to train).
        head: the student's head kind (``"text"`` or ``"linear"``).
        needs_teacher_images: training reads the teacher's image embedding of every view.
        white_box: the student is built from the teacher's weights (``ctx.white_box``).
        has_student: there is a student at all (zero-shot evaluates the teacher itself).
    """

    stages: ClassVar[tuple[Stage, ...]] = (Stage("train", trains="student"),)
    head: ClassVar[str] = "linear"
    needs_teacher_images: ClassVar[bool] = False
    white_box: ClassVar[bool] = False
    has_student: ClassVar[bool] = True

    def __init__(self, student: Student | None, hp: HParams, ctx: BuildContext) -> None:
        self.student = student
        self.hp = hp
        self.ctx = ctx
        self.stage: Stage | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self._features: torch.Tensor | None = None  # a frozen_features stage's f(x), by row

    # ---- build -----------------------------------------------------------------------------

    @classmethod
    def build(cls, ctx: BuildContext, hp: HParams | None = None) -> Algorithm:
        """Build the algorithm and its student from a context."""
        return cls(cls.build_student(ctx), hp or HParams(), ctx)

    @classmethod
    def build_student(cls, ctx: BuildContext) -> Student | None:
        """The default student: pretrained backbone -> projection -> head of ``cls.head``."""
        backbone, feature_dim = ctx.student.build(pretrained=ctx.pretrained)
        return Student(
            backbone,
            backbone_spec=ctx.student.spec(),
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

    @classmethod
    def describe_student(cls, ctx: BuildContext) -> dict[str, Any]:
        """What the results record names as this algorithm's student."""
        return ctx.student.describe()

    @classmethod
    def stage_named(cls, name: str) -> Stage:
        """The stage called ``name``."""
        for stage in cls.stages:
            if stage.name == name:
                return stage
        raise ValueError(f"{cls.__name__} has no stage {name!r}")

    # ---- stages ----------------------------------------------------------------------------

    def trainable(self, stage: Stage) -> list[nn.Module]:
        """Modules trained in ``stage`` (``stage.trains``); everything else is frozen."""
        assert self.student is not None
        parts: dict[str, nn.Module] = {
            "student": self.student,
            "backbone": self.student.backbone,
            "projection": self.student.projection,
        }
        return [parts[stage.trains]]

    def begin_stage(self, stage: Stage, *, train_x: torch.Tensor | None = None) -> None:
        """Freeze what ``stage`` does not train and create a fresh Adam optimizer.

        What the stage starts from is loaded before this, by the loop
        (``client_distiller.train.start_stage``).

        Args:
            stage: one of ``self.stages``.
            train_x: all training images (uint8), for a stage with ``frozen_features``.
        """
        assert self.student is not None
        self.stage = stage
        self.student.requires_grad_(False)
        modules = self.trainable(stage)
        for module in modules:
            module.requires_grad_(True)
        self.train_mode()
        params = [p for m in modules for p in m.parameters() if p.requires_grad]
        lr = getattr(self.hp, stage.lr)
        self.optimizer = torch.optim.Adam(params, lr=lr, weight_decay=self.hp.weight_decay)
        self._features = None
        if stage.frozen_features and train_x is not None:
            self._features = self.frozen_features(train_x)

    @torch.no_grad()
    def frozen_features(self, images: torch.Tensor, chunk: int = 256) -> torch.Tensor:
        """``f(x)`` of all training pairs, once, without gradients (backbone in eval mode)."""
        assert self.student is not None
        chunks = []
        for start in range(0, len(images), chunk):
            x = images[start : start + chunk].float() / 255.0
            chunks.append(self.student.features(x))
        return torch.cat(chunks)

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

    def save_stage(self, path: Path, stage: Stage) -> Path:
        """Write the student after ``stage`` as a self-contained checkpoint."""
        assert self.student is not None
        return self.student.save(path, stage=stage.name, algorithm=type(self).__name__)

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
