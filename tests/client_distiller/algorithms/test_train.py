"""The training loop: stage files, model selection, SWA, and resuming an interrupted run."""

from __future__ import annotations

import pytest
import torch

from client_distiller.algorithms import ALGORITHMS, HParams
from client_distiller.train import RESUME_FILE, TrainConfig, WeightAverage, sample_rows, train

from .helpers import synthetic_pairs, tiny_context


class Interrupt(Exception):
    pass


def _build(name: str = "adip"):
    torch.manual_seed(0)
    return ALGORITHMS[name].build(tiny_context(), HParams(lr=1e-3, align_lr=1e-2))


def test_resume_after_interruption_matches_uninterrupted_run(tmp_path):
    cfg = TrainConfig(
        steps=6, align_steps=4, batch_size=4, checkpoint_every=2, eval_every=3, progress=False
    )
    data = synthetic_pairs()
    reference = _build()
    train(reference, data, cfg, tmp_path / "ref", eval_fn=lambda a: 0.5)

    calls = {"n": 0}

    def flaky_eval(algorithm) -> float:
        # Dies at the first evaluation of the distill stage (step 3), after the resume
        # checkpoint of step 2 was written: what a kill mid-stage leaves behind.
        calls["n"] += 1
        if algorithm.stage.name == "distill" and calls["n"] == 3:
            raise Interrupt
        return 0.5

    workdir = tmp_path / "run"
    with pytest.raises(Interrupt):
        train(_build(), data, cfg, workdir, eval_fn=flaky_eval)
    assert (workdir / "align.pt").is_file() and (workdir / RESUME_FILE).is_file()
    assert not (workdir / "distill.pt").exists()

    resumed = _build()
    result = train(resumed, data, cfg, workdir, eval_fn=flaky_eval)
    assert result.reused_stages == ["align"] and result.resumed_from == {"distill": 2}
    assert not (workdir / RESUME_FILE).exists()
    for key, value in reference.student.state_dict().items():
        assert torch.equal(value, resumed.student.state_dict()[key]), key

    # A finished run is reused as is.
    again = _build()
    assert train(again, data, cfg, workdir).reused_stages == ["align", "distill"]
    assert torch.equal(again.student.projection.weight, reference.student.projection.weight)


def test_validation_keeps_the_best_checkpoint(tmp_path):
    algo = _build("erm")
    seen = []

    def val(a) -> float:
        # Best at the second evaluation; later ones are worse.
        seen.append({k: v.clone() for k, v in a.student.state_dict().items()})
        return [0.2, 0.9, 0.1, 0.3][len(seen) - 1]

    cfg = TrainConfig(steps=8, batch_size=4, eval_every=2, progress=False)
    result = train(algo, synthetic_pairs(), cfg, tmp_path, eval_fn=val)
    assert result.best_val == {"train": 0.9}
    for key, value in algo.student.state_dict().items():
        assert torch.equal(value, seen[1][key]), key


def test_weight_average_is_the_running_mean():
    avg = WeightAverage()
    for w in (1.0, 2.0, 6.0):
        avg.update({"w": torch.tensor([w]), "n": torch.tensor(int(w))})
    assert avg.state["w"].item() == pytest.approx(3.0)
    assert avg.state["n"].item() == 6  # integer buffers keep the latest value


def test_swa_changes_the_final_weights(tmp_path):
    data = synthetic_pairs()
    plain, swa = _build("erm"), _build("erm")
    train(plain, data, TrainConfig(steps=6, batch_size=4, progress=False), tmp_path / "a")
    train(swa, data, TrainConfig(steps=6, batch_size=4, swa=True, progress=False), tmp_path / "b")
    w_plain = plain.student.classifier.weight
    w_swa = swa.student.classifier.weight
    assert not torch.equal(w_plain, w_swa)


def test_batches_are_balanced_over_domains():
    domain = torch.tensor([0] * 10 + [1] * 3 + [2] * 50)
    rows = sample_rows(domain, 4, torch.Generator().manual_seed(0))
    assert torch.bincount(domain[rows]).tolist() == [4, 4, 4]
