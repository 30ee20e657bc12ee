"""The loss functions against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from client_distiller.losses import adip_loss, erm_loss, kd_loss, zeroshot_logits


def test_adip_loss_matches_hand_computed_value():
    # Two 2-d samples; cosines are easy to do by hand.
    z = torch.tensor([[3.0, 4.0], [0.0, 2.0]])  # normalized: (0.6, 0.8), (0, 1)
    t_img = torch.tensor([[1.0, 0.0], [0.0, 5.0]])  # (1, 0), (0, 1)
    text = torch.tensor([[0.0, 1.0], [1.0, 1.0]])  # T_0 = (0, 1), T_1 = (1, 1)/sqrt2
    y = torch.tensor([0, 1])
    # sample 0: cos_img = 0.6, cos_txt = 0.8; sample 1: cos_img = 1, cos_txt = 1/sqrt2
    lam = 0.3
    expected = -((lam * 0.6 + 0.7 * 0.8) + (lam * 1.0 + 0.7 / math.sqrt(2))) / 2
    assert adip_loss(z, t_img, text, y, lam=lam).item() == pytest.approx(expected, abs=1e-6)


def test_adip_loss_extremes_of_lambda():
    z = torch.tensor([[1.0, 0.0]])
    t_img = torch.tensor([[0.0, 1.0]])  # orthogonal: cos 0
    text = torch.tensor([[-1.0, 0.0]])  # opposite: cos -1
    y = torch.tensor([0])
    assert adip_loss(z, t_img, text, y, lam=1.0).item() == pytest.approx(0.0, abs=1e-7)
    assert adip_loss(z, t_img, text, y, lam=0.0).item() == pytest.approx(1.0, abs=1e-7)


def test_zeroshot_logits_are_scaled_cosines():
    img = torch.tensor([[2.0, 0.0]])
    text = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    logits = zeroshot_logits(img, text, 10.0)
    assert logits.tolist()[0] == pytest.approx([10.0, 10.0 / math.sqrt(2)], abs=1e-5)


def test_kd_loss_matches_hand_computed_value():
    s = torch.tensor([[1.0, 0.0]])
    t = torch.tensor([[0.0, 2.0]])
    y = torch.tensor([0])
    temp, alpha = 2.0, 0.5
    # CE(s, y) = -log softmax(s)[0]
    ce = -math.log(math.e / (math.e + 1))
    # softened: p_s = softmax(s / 2), p_t = softmax(t / 2)
    ps = [math.exp(0.5) / (math.exp(0.5) + 1), 1 / (math.exp(0.5) + 1)]
    pt = [1 / (1 + math.e), math.e / (1 + math.e)]
    kl = sum(p * math.log(p / q) for p, q in zip(pt, ps, strict=False))  # KL(p_t || p_s)
    expected = ce + alpha * temp**2 * kl
    assert kd_loss(s, y, t, temperature=temp, alpha=alpha).item() == pytest.approx(expected, 1e-6)


def test_kd_loss_is_ce_when_student_equals_teacher():
    torch.manual_seed(0)
    s = torch.randn(5, 4)
    y = torch.randint(4, (5,))
    assert kd_loss(s, y, s.clone()).item() == pytest.approx(F.cross_entropy(s, y).item(), 1e-5)
    assert erm_loss(s, y).item() == pytest.approx(F.cross_entropy(s, y).item())
