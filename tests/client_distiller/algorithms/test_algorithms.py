"""Every registered algorithm trains and predicts on tiny models; stages freeze what they say."""

from __future__ import annotations

import pytest
import torch

from client_distiller.algorithms import ALGORITHMS, ADiP, Batch, HParams
from client_distiller.models import load_student
from client_distiller.train import TrainConfig, make_batch, stage_path, start_stage, train

from .helpers import CLASSES, synthetic_pairs, tiny_context

TRAINED = ["erm", "kd", "adip", "sd"]


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", TRAINED)
def test_update_and_predict(name, tmp_path):
    torch.manual_seed(0)
    algo = ALGORITHMS[name].build(tiny_context(with_teacher=name == "sd"), HParams(lr=1e-3))
    data = synthetic_pairs()
    before = _snapshot(algo.student)
    for stage in algo.stages:
        if stage.starts_from is not None:
            previous = type(algo).stage_named(stage.starts_from)
            algo.save_stage(stage_path(tmp_path, previous), previous)
        start_stage(algo, stage, tmp_path, train_x=data.x)
        logs = algo.update(make_batch(data, torch.arange(8), 0))
        assert set(logs) == {"loss"} and torch.isfinite(torch.tensor(logs["loss"]))
    assert not _same(before, _snapshot(algo.student))  # something was trained
    logits = algo.predict(data.x[:5].float() / 255)
    assert logits.shape == (5, len(CLASSES)) and torch.isfinite(logits).all()


def test_zeroshot_predicts_from_teacher_embeddings():
    ctx = tiny_context()
    algo = ALGORITHMS["zeroshot"].build(ctx)
    assert algo.stages == () and algo.student is None
    # Give each image exactly its class's text embedding: zero-shot must be perfect.
    y = torch.tensor([2, 0, 1, 1])
    batch = Batch(x=torch.zeros(4, 3, 8, 8), y=y, t_img=ctx.class_text[y] * 3.0)
    assert torch.equal(algo.predict_batch(batch).argmax(1), y)


def test_align_leaves_backbone_bit_identical_and_distill_leaves_projection(tmp_path):
    torch.manual_seed(0)
    algo = ADiP.build(tiny_context(), HParams(lr=1e-2, align_lr=1e-2))
    data = synthetic_pairs()
    backbone0, proj0 = _snapshot(algo.student.backbone), _snapshot(algo.student.projection)

    align, distill = ADiP.stages
    start_stage(algo, align, tmp_path, train_x=data.x)
    for step in range(3):
        algo.update(make_batch(data, torch.arange(step, step + 8), step))
    # BatchNorm running stats included: the frozen backbone ran in eval mode only.
    assert _same(backbone0, _snapshot(algo.student.backbone))
    proj1 = _snapshot(algo.student.projection)
    assert not _same(proj0, proj1)
    algo.save_stage(tmp_path / "align.pt", align)

    # Scribble on the projection: Distill must reload the Align checkpoint explicitly.
    with torch.no_grad():
        algo.student.projection.weight.zero_()
    start_stage(algo, distill, tmp_path, train_x=data.x)
    assert _same(proj1, _snapshot(algo.student.projection))
    for step in range(3):
        algo.update(make_batch(data, torch.arange(step, step + 8), step))
    assert _same(proj1, _snapshot(algo.student.projection))
    assert not _same(backbone0, _snapshot(algo.student.backbone))


def test_distill_without_align_checkpoint_fails_clearly(tmp_path):
    algo = ADiP.build(tiny_context())
    with pytest.raises(FileNotFoundError, match=r"align\.pt"):
        start_stage(algo, ADiP.stage_named("distill"), tmp_path)


def test_sd_requires_a_white_box_teacher():
    with pytest.raises(ValueError, match="local teacher"):
        ALGORITHMS["sd"].build(tiny_context(with_teacher=False))


@pytest.mark.parametrize("name", ["adip", "erm", "sd"])
def test_checkpoint_is_self_contained(name, tmp_path):
    torch.manual_seed(0)
    algo = ALGORITHMS[name].build(tiny_context(with_teacher=name == "sd"))
    cfg = TrainConfig(steps=3, align_steps=3, batch_size=4, progress=False)
    result = train(algo, synthetic_pairs(), cfg, tmp_path / name)
    student = load_student(result.checkpoint)  # vl2v-tiny (sd) is a built-in architecture
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():  # same kernels on both sides (attention has a no-grad fast path)
        assert torch.equal(student(x), algo.predict(x))
    assert student.classes == CLASSES and student.teacher_fingerprint == "f" * 64


def test_the_registry_states_each_algorithms_facts() -> None:
    facts = {
        name: (
            cls.has_student,
            cls.needs_teacher_images,
            cls.white_box,
            [s.name for s in cls.stages],
        )
        for name, cls in ALGORITHMS.items()
    }
    assert facts == {
        "erm": (True, False, False, ["train"]),
        "kd": (True, True, False, ["train"]),
        "adip": (True, True, False, ["align", "distill"]),
        "sd": (True, True, True, ["distill"]),
        "zeroshot": (False, False, False, []),
    }
    align, distill = ADiP.stages
    assert (align.trains, align.steps, align.lr, align.frozen_features) == (
        "projection", "align_steps", "align_lr", True,
    )  # fmt: skip
    assert (distill.trains, distill.starts_from) == ("backbone", "align")


def test_a_new_algorithm_is_one_small_class(tmp_path) -> None:
    from client_distiller.algorithms import Stage
    from client_distiller.losses import adip_loss

    class TextProbe(ADiP):
        """Only the projection, against the text embeddings alone (ADiP's Align with lam=0)."""

        stages = (Stage("probe", trains="projection", lr="align_lr", frozen_features=True),)

        def loss(self, batch):
            emb = self.student.projection(self._features[batch.index])
            return adip_loss(emb, batch.t_img, self.ctx.class_text, batch.y, lam=0.0)

    torch.manual_seed(0)
    algo = TextProbe.build(tiny_context(), HParams(align_lr=1e-2))
    backbone0 = _snapshot(algo.student.backbone)
    proj0 = _snapshot(algo.student.projection)
    cfg = TrainConfig(steps=3, batch_size=4, progress=False)
    result = train(algo, synthetic_pairs(), cfg, tmp_path)
    assert result.checkpoint == tmp_path / "probe.pt" and result.checkpoint.is_file()
    assert _same(backbone0, _snapshot(algo.student.backbone))
    assert not _same(proj0, _snapshot(algo.student.projection))
