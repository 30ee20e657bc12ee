"""Baselines: ERM, naive KD and the teacher's own zero-shot accuracy."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from client_distiller.algorithms.base import Algorithm, Batch, BuildContext, Stage
from client_distiller.losses import erm_loss, kd_loss, kd_temperature, zeroshot_logits
from client_distiller.models.student import Student


class ERM(Algorithm):
    """Cross-entropy on a new linear head, full fine-tuning; never looks at the teacher."""

    def loss(self, batch: Batch) -> torch.Tensor:
        assert self.student is not None
        return erm_loss(self.student(batch.x), batch.y)


class KD(ERM):
    """Naive distillation: CE + T^2 KL(teacher zero-shot probs || student probs).

    The teacher's probabilities come from its embedding of the very view the student sees and
    the class text embeddings, times its logit scale (see ``losses.kd_loss``). The temperature
    is quoted against CLIP's logit scale of 100 (``losses.kd_temperature``), so a teacher with
    a smaller scale gets the same softening, not near-uniform targets.
    """

    needs_teacher_images: ClassVar[bool] = True

    def loss(self, batch: Batch) -> torch.Tensor:
        assert self.student is not None and batch.t_img is not None
        teacher_logits = zeroshot_logits(batch.t_img, self.ctx.class_text, self.ctx.logit_scale)
        return kd_loss(
            self.student(batch.x),
            batch.y,
            teacher_logits,
            temperature=kd_temperature(self.hp.kd_temperature, self.ctx.logit_scale),
            alpha=self.hp.kd_alpha,
        )


class ZeroShot(Algorithm):
    """The teacher itself: ``argmax_c cos(I_t(x), T_c)``. No student, no training."""

    stages: ClassVar[tuple[Stage, ...]] = ()
    has_student: ClassVar[bool] = False

    @classmethod
    def build_student(cls, ctx: BuildContext) -> Student | None:
        return None

    def trainable(self, stage: Stage) -> list[nn.Module]:
        raise RuntimeError("zero-shot has nothing to train")

    def begin_stage(self, stage: Stage, *, train_x: torch.Tensor | None = None) -> None:
        raise RuntimeError("zero-shot has nothing to train")

    @torch.no_grad()
    def predict_batch(self, batch: Batch) -> torch.Tensor:
        if batch.t_img is None:
            raise ValueError("zero-shot evaluation needs the teacher's embeddings of the images")
        return zeroshot_logits(batch.t_img, self.ctx.class_text, self.ctx.logit_scale)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        return None
