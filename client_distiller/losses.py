"""Loss functions of VL2V-ADiP and its baselines: pure functions over tensors.

Shapes: n = batch size, d = CLIP embedding dim, C = number of classes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def adip_loss(
    student_emb: torch.Tensor,
    teacher_img: torch.Tensor,
    class_text: torch.Tensor,
    labels: torch.Tensor,
    lam: float = 0.5,
) -> torch.Tensor:
    """The VL2V-ADiP loss, used unchanged by Align, Distill and VL2V-SD.

    ``L = -(1/n) sum_i [lam * cos(z_i, I_t(x_i)) + (1 - lam) * cos(z_i, T_{y_i})]`` with
    ``z = normalize(P f(x))``. No cross-entropy term and no temperature (METHOD.md).

    Args:
        student_emb: the student's projected embeddings ``P f(x)``, not yet normalized.
        teacher_img: the teacher's image embeddings of the same views.
        class_text: the class text embeddings ``T_c``, one row per class.
        labels: class index of each image.
        lam: weight of the image term; ``1 - lam`` weights the text term.

    Returns:
        The scalar loss (mean over the batch).
    """
    z = F.normalize(student_emb, dim=-1)  # (n, d)
    t_img = F.normalize(teacher_img, dim=-1)  # (n, d)
    t_txt = F.normalize(class_text, dim=-1)[labels]  # (n, d)
    cos_img = (z * t_img).sum(-1)  # (n,)
    cos_txt = (z * t_txt).sum(-1)  # (n,)
    return -(lam * cos_img + (1.0 - lam) * cos_txt).mean()


def zeroshot_logits(
    image_emb: torch.Tensor, class_text: torch.Tensor, logit_scale: float
) -> torch.Tensor:
    """CLIP's zero-shot classifier: ``s * cos(image, T_c)`` for every class.

    Args:
        image_emb: image embeddings (teacher's or a student's ``P f(x)``).
        class_text: class text embeddings, one row per class.
        logit_scale: the teacher's ``exp(logit_scale)``, e.g. 100.

    Returns:
        Logits of shape (n, C).
    """
    img = F.normalize(image_emb, dim=-1)  # (n, d)
    txt = F.normalize(class_text, dim=-1)  # (C, d)
    return logit_scale * img @ txt.T  # (n, C)


#: The logit scale KD temperatures are quoted against: OpenAI CLIP's (``exp(log 100)``).
REFERENCE_LOGIT_SCALE = 100.0


def kd_temperature(
    relative: float, logit_scale: float, reference: float = REFERENCE_LOGIT_SCALE
) -> float:
    """The absolute KD temperature for a teacher with its own logit scale.

    ``--kd-temperature T`` means the softening T would give with CLIP's logit scale of 100:
    the teacher's soft targets are ``softmax(s * cos / T_abs)`` with ``T_abs = T * s / 100``,
    i.e. ``softmax(100 * cos / T)`` whatever the teacher's own scale ``s``. (With a teacher of
    scale 20, an absolute T = 4 would give ``softmax(5 * cos)``: near-uniform targets.)

    Args:
        relative: the temperature at the reference scale.
        logit_scale: the teacher's ``exp(logit_scale)``.
        reference: the scale ``relative`` is quoted against.
    """
    return relative * logit_scale / reference


def kd_loss(
    student_logits: torch.Tensor,
    labels: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float = 4.0,
    alpha: float = 1.0,
) -> torch.Tensor:
    """Naive knowledge distillation: ``CE(s, y) + alpha * T^2 * KL(p_t^T || p_s^T)``.

    The teacher's probabilities are its zero-shot probabilities (image embedding of the same
    view against the class text embeddings, times the logit scale), softened by ``T``. The KL
    is ``sum_c p_t log(p_t / p_s)``: ``F.kl_div`` takes the student's *log*-probabilities as
    input and the teacher's probabilities as target (the reference code swaps/misuses them).
    ``T^2`` keeps the gradient scale of the soft term independent of ``T`` (Hinton et al.).

    Args:
        student_logits: the student's class logits.
        labels: class index of each image.
        teacher_logits: the teacher's zero-shot logits of the same views.
        temperature: softening temperature ``T`` applied to both logits (absolute; see
            :func:`kd_temperature` for the one ``KD`` uses).
        alpha: weight of the distillation term.

    Returns:
        The scalar loss (mean over the batch).
    """
    ce = F.cross_entropy(student_logits, labels)
    log_p_s = F.log_softmax(student_logits / temperature, dim=-1)  # (n, C)
    p_t = F.softmax(teacher_logits / temperature, dim=-1)  # (n, C)
    kl = F.kl_div(log_p_s, p_t, reduction="batchmean")  # sum over C, mean over n
    return ce + alpha * temperature**2 * kl


def erm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Plain cross-entropy (ERM)."""
    return F.cross_entropy(logits, labels)
