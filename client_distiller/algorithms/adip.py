"""VL2V-ADiP (Align, Distill, Predict) and its white-box sibling VL2V-SD."""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import torch

from client_distiller.algorithms.base import Algorithm, Batch, BuildContext, Stage
from client_distiller.losses import adip_loss
from client_distiller.models.student import Student


class ADiP(Algorithm):
    """Align (train only P on frozen features), then Distill (train only f), then Predict.

    Both stages minimize ``losses.adip_loss``; Predict is the student's text head
    (``s * cos(P f(x), T_c)``), so the teacher is not needed at test time. Distill starts from
    the Align checkpoint, never from a random projection.
    """

    stages: ClassVar[tuple[Stage, ...]] = (
        Stage(
            "align", trains="projection", steps="align_steps", lr="align_lr", frozen_features=True
        ),
        Stage("distill", trains="backbone", starts_from="align"),
    )
    head: ClassVar[str] = "text"
    needs_teacher_images: ClassVar[bool] = True

    def loss(self, batch: Batch) -> torch.Tensor:
        assert self.student is not None and self.stage is not None and batch.t_img is not None
        if self.stage.frozen_features:
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

    stages: ClassVar[tuple[Stage, ...]] = (Stage("distill", trains="backbone"),)
    white_box: ClassVar[bool] = True

    @classmethod
    def build_student(cls, ctx: BuildContext) -> Student | None:
        if ctx.white_box is None:
            raise ValueError("sd is white-box: it needs a local teacher (--local-teacher)")
        teacher = ctx.white_box
        return Student(
            copy.deepcopy(teacher.visual),
            backbone_spec={"kind": "open_clip_visual", "name": teacher.name},
            feature_dim=int(ctx.class_text.shape[1]),
            classes=ctx.classes,
            head="text",
            class_text=ctx.class_text,
            logit_scale=ctx.logit_scale,
            project=False,
            input_size=int(teacher.image_size),
            mean=teacher.mean,
            std=teacher.std,
            prompts=ctx.prompts,
            teacher_fingerprint=ctx.teacher_fingerprint,
        )

    @classmethod
    def describe_student(cls, ctx: BuildContext) -> dict[str, Any]:
        assert ctx.white_box is not None
        return {"kind": "open_clip_visual", "name": ctx.white_box.name}
