"""VL2V-ADiP (Align, Distill, Predict) and its white-box sibling VL2V-SD."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from client_distiller.algorithms.base import Algorithm, Batch, BuildContext
from client_distiller.losses import adip_loss
from client_distiller.models.student import Student


class ADiP(Algorithm):
    """Align (train only P on frozen features), then Distill (train only f), then Predict.

    Both stages minimize ``losses.adip_loss``; Predict is the student's text head
    (``s * cos(P f(x), T_c)``), so the teacher is not needed at test time.
    """

    stages: tuple[str, ...] = ("align", "distill")
    head = "text"
    needs_teacher_images = True
    feature_chunk = 256

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._features: torch.Tensor | None = None

    def trainable(self, stage: str) -> list[nn.Module]:
        assert self.student is not None
        if stage == "align":
            return [self.student.projection]
        if stage == "distill":
            return [self.student.backbone]
        raise ValueError(f"unknown stage {stage!r}")

    def begin_stage(self, stage: str, *, workdir: Path, train_x: torch.Tensor | None) -> None:
        if stage == "distill" and "align" in self.stages:
            # Distill must start from the aligned projection; never from a random one.
            self.load_stage(Path(workdir) / "align.pt")
        super().begin_stage(stage, workdir=workdir, train_x=train_x)
        self._features = None
        if stage == "align" and train_x is not None:
            self._features = self.frozen_features(train_x)

    @torch.no_grad()
    def frozen_features(self, images: torch.Tensor) -> torch.Tensor:
        """``f(x)`` of all training pairs, once, without gradients (backbone in eval mode)."""
        assert self.student is not None
        chunks = []
        for start in range(0, len(images), self.feature_chunk):
            x = images[start : start + self.feature_chunk].float() / 255.0
            chunks.append(self.student.features(x))
        return torch.cat(chunks)

    def loss(self, batch: Batch) -> torch.Tensor:
        assert self.student is not None and batch.t_img is not None
        if self.stage == "align":
            if self._features is not None and batch.index is not None:
                feats = self._features[batch.index]  # (n, F), computed once
            else:  # online views: a fresh view has no cached features
                with torch.no_grad():
                    feats = self.student.features(batch.x)
            emb = self.student.projection(feats)  # (n, d)
        else:
            emb = self.student.embed(batch.x)  # (n, d)
        return adip_loss(emb, batch.t_img, self.ctx.class_text, batch.y, self.hp.lam)


class SD(ADiP):
    """VL2V-SD (white-box): fine-tune a copy of the teacher's image tower with the ADiP loss.

    The copy already maps into CLIP space, so there is no projection and no Align stage.
    """

    stages: tuple[str, ...] = ("distill",)

    @classmethod
    def build_student(cls, ctx: BuildContext) -> Student | None:
        if ctx.teacher_visual is None or ctx.teacher_spec is None:
            raise ValueError("sd is white-box: it needs a local teacher (--local-teacher)")
        spec = ctx.teacher_spec
        visual = copy.deepcopy(ctx.teacher_visual)
        return Student(
            visual,
            backbone_spec={"kind": "open_clip_visual", "name": spec["name"]},
            feature_dim=int(ctx.class_text.shape[1]),
            classes=ctx.classes,
            head="text",
            class_text=ctx.class_text,
            logit_scale=ctx.logit_scale,
            project=False,
            input_size=int(spec["image_size"]),
            mean=spec["mean"],
            std=spec["std"],
            prompts=ctx.prompts,
            teacher_fingerprint=ctx.teacher_fingerprint,
        )
