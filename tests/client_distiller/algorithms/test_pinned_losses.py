"""Regression pin: every training step's loss, per algorithm, as before the refactor of the
experiment layer.

The expected losses were computed with the code of commit c76ccc0. Same initialization, same
RNG use and order, same batches, same losses and the same stage schedule reproduce them; the
relative tolerance (1e-5) absorbs float rounding on another CPU, not a changed computation.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from client_distiller.algorithms import ALGORITHMS, HParams
from client_distiller.train import TrainConfig, train

from .helpers import synthetic_pairs, tiny_context

EXPECTED = {
    "erm": [1.0589230060577393, 1.0130269527435303, 1.1012372970581055, 0.9689700603485107],
    "kd": [1.739277958869934, 1.6807386875152588, 1.6488741636276245, 1.5850310325622559],
    # align x 3, then distill x 4
    "adip": [
        0.13123925030231476,
        -0.06169142574071884,
        -0.06449583172798157,
        -0.09673847258090973,
        -0.23413437604904175,
        -0.20148232579231262,
        -0.2436782419681549,
    ],
    "sd": [-0.03656411170959473, -0.21230462193489075, -0.28174811601638794, -0.3662107586860657],
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_losses_match_the_pinned_values(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    algorithm = ALGORITHMS[name].build(
        tiny_context(with_teacher=name == "sd"), HParams(lr=1e-3, align_lr=1e-2)
    )
    losses: list[float] = []
    update = algorithm.update

    def recording(batch):
        logs = update(batch)
        losses.append(logs["loss"])
        return logs

    algorithm.update = recording  # type: ignore[method-assign]
    config = TrainConfig(steps=4, align_steps=3, batch_size=4, eval_every=2, seed=1, progress=False)
    train(algorithm, synthetic_pairs(), config, tmp_path, eval_fn=lambda a: 0.5)
    assert losses == pytest.approx(EXPECTED[name], rel=1e-5)
