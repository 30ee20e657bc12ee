"""The training loop shared by every algorithm: stages, sampling, selection, SWA and resume.

The loop runs an algorithm's stages (``Algorithm.stages``, data) in order and owns their
files: each finished stage is ``<workdir>/<stage>.pt``, the stage in progress has
``<workdir>/resume.pt``, and a stage that starts from an earlier one gets that checkpoint
loaded here, explicitly.

Training data are (image, view) pairs: row ``i`` holds the view the teacher embedded and that
embedding, so the student sees exactly what the teacher saw. With online views each step draws
fresh views and pays for their teacher embeddings (``OnlineViews``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch

from client_distiller.algorithms.base import Algorithm, Batch, Stage
from client_distiller.progress import progress_bar
from model_io import atomic_save

RESUME_FILE = "resume.pt"


class OnlineViews(Protocol):
    """Draws a fresh augmented view of each given training row and its teacher embedding."""

    queries: int

    def __call__(self, rows: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Return uint8 views (n, 3, H, W) and teacher embeddings (n, d) of ``rows``."""
        ...


@dataclass
class PairData:
    """Training pairs in memory.

    Attributes:
        x: uint8 images at the student's input size, (M, 3, H, W).
        y: class indices, (M,).
        domain: source-domain index of each row, (M,); batches are balanced over domains.
        t_img: teacher image embeddings of each row's view, (M, d), or None (ERM).
        online: when set, each step replaces x and t_img by fresh views (``--views online``).
    """

    x: torch.Tensor
    y: torch.Tensor
    domain: torch.Tensor
    t_img: torch.Tensor | None = None
    online: OnlineViews | None = None

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class TrainConfig:
    """Loop settings (``steps`` per stage; Align has its own count)."""

    steps: int = 300
    align_steps: int = 300
    batch_size: int = 32  # per source domain, as in the paper
    seed: int = 0
    eval_every: int = 0  # 0: no training-domain validation
    swa: bool = False
    checkpoint_every: int = 50
    progress: bool = True


@dataclass
class TrainResult:
    """What ``train`` did: the final checkpoint, per-stage times and selection, what it reused."""

    checkpoint: Path | None
    stage_seconds: dict[str, float] = field(default_factory=dict)
    best_val: dict[str, float] = field(default_factory=dict)
    resumed_from: dict[str, int] = field(default_factory=dict)
    reused_stages: list[str] = field(default_factory=list)


def sample_rows(domain: torch.Tensor, per_domain: int, gen: torch.Generator) -> torch.Tensor:
    """Row indices of one batch: ``per_domain`` rows drawn uniformly from each source domain."""
    rows = []
    for d in torch.unique(domain):
        members = torch.nonzero(domain == d).flatten()  # (m_d,)
        pick = torch.randint(len(members), (per_domain,), generator=gen)  # (b,)
        rows.append(members[pick])
    return torch.cat(rows)


def make_batch(data: PairData, rows: torch.Tensor, step: int) -> Batch:
    """Assemble the batch of ``rows`` (fresh views and embeddings when online)."""
    if data.online is not None:
        x, t_img = data.online(rows, step)
        return Batch(x=x.float() / 255.0, y=data.y[rows], t_img=t_img, index=None)
    t_img = data.t_img[rows] if data.t_img is not None else None
    return Batch(x=data.x[rows].float() / 255.0, y=data.y[rows], t_img=t_img, index=rows)


class WeightAverage:
    """Running mean of a model's floating-point state (SWA); integer buffers keep the latest."""

    def __init__(self) -> None:
        self.n = 0
        self.state: dict[str, torch.Tensor] = {}

    def update(self, state: dict[str, torch.Tensor]) -> None:
        self.n += 1
        for key, value in state.items():
            value = value.detach()
            if key not in self.state or not value.is_floating_point():
                self.state[key] = value.clone()
            else:
                self.state[key] += (value - self.state[key]) / self.n


def stage_path(workdir: Path, stage: Stage | str) -> Path:
    """The checkpoint a finished stage leaves in ``workdir``."""
    return Path(workdir) / f"{stage.name if isinstance(stage, Stage) else stage}.pt"


def start_stage(
    algorithm: Algorithm, stage: Stage, workdir: Path, *, train_x: torch.Tensor | None = None
) -> None:
    """Load what ``stage`` starts from (explicitly: a missing file raises), then begin it.

    Raises:
        FileNotFoundError: the stage starts from an earlier one whose checkpoint is missing.
    """
    if stage.starts_from is not None:
        algorithm.load_stage(stage_path(workdir, stage.starts_from))
    algorithm.begin_stage(stage, train_x=train_x)


def train(
    algorithm: Algorithm,
    data: PairData,
    config: TrainConfig,
    workdir: str | os.PathLike,
    *,
    eval_fn: Callable[[Algorithm], float] | None = None,
    desc: str = "",
) -> TrainResult:
    """Run every stage of ``algorithm`` on ``data``; resumable after a kill.

    Each finished stage writes ``<workdir>/<stage>.pt`` (a full student checkpoint); during a
    stage ``<workdir>/resume.pt`` is rewritten every ``checkpoint_every`` steps with the
    weights, the optimizer, the sampler's RNG, the selection and SWA state, so a killed run
    continues from its last checkpoint and finishes where an uninterrupted run would.

    Args:
        algorithm: a built algorithm.
        data: the training pairs.
        config: loop settings.
        workdir: this run's directory (one per algorithm, target and seed).
        eval_fn: training-domain validation accuracy of the current weights (source
            out-splits); with ``config.eval_every`` it selects the best checkpoint.
        desc: progress-bar label.

    Returns:
        The path of the final student checkpoint, stage times, selection and reuse.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    result = TrainResult(checkpoint=None)
    stages = algorithm.stages
    if data.t_img is None and data.online is None and algorithm.needs_teacher_images:
        raise ValueError(f"{type(algorithm).__name__} needs teacher image embeddings")

    done = [i for i, s in enumerate(stages) if stage_path(workdir, s).is_file()]
    first = 0
    if done:  # resume after the last finished stage
        last = max(done)
        result.checkpoint = stage_path(workdir, stages[last])
        algorithm.load_stage(result.checkpoint)
        first = last + 1
        result.reused_stages = [s.name for s in stages[:first]]
    for stage in stages[first:]:
        result.checkpoint = _run_stage(
            algorithm, stage, data, config, workdir, eval_fn, desc, result
        )
    return result


def _run_stage(
    algorithm: Algorithm,
    stage: Stage,
    data: PairData,
    config: TrainConfig,
    workdir: Path,
    eval_fn: Callable[[Algorithm], float] | None,
    desc: str,
    result: TrainResult,
) -> Path:
    steps: int = getattr(config, stage.steps)
    start_stage(algorithm, stage, workdir, train_x=None if data.online else data.x)
    assert algorithm.optimizer is not None
    # The sampler's seed depends on the stage's name (its length, kept as it always was), so
    # every stage of every algorithm draws its own batches.
    gen = torch.Generator().manual_seed(config.seed * 1000 + len(stage.name))
    start, best_acc, best_state = 0, -1.0, None
    average = WeightAverage() if config.swa else None
    swa_start, swa_every = steps // 2, max(1, steps // 50)

    resume_path = workdir / RESUME_FILE
    if resume_path.is_file():
        saved = torch.load(resume_path, map_location="cpu", weights_only=True)
        if saved["stage"] == stage.name:
            algorithm.load_state_dict(saved["student"])
            algorithm.optimizer.load_state_dict(saved["optimizer"])
            gen.set_state(saved["generator"])
            start, best_acc, best_state = saved["step"], saved["best_acc"], saved["best_state"]
            if average is not None and saved["swa_state"] is not None:
                average.n, average.state = saved["swa_n"], saved["swa_state"]
            result.resumed_from[stage.name] = start

    t0 = time.perf_counter()
    bar = progress_bar(
        range(start, steps),
        desc=f"{desc} {stage.name}".strip(),
        unit="step",
        initial=start,
        total=steps,
        enabled=config.progress,
        leave=False,
    )
    for step in bar:
        rows = sample_rows(data.domain, config.batch_size, gen)
        logs = algorithm.update(make_batch(data, rows, step))
        done = step + 1
        if average is not None and done > swa_start and done % swa_every == 0:
            average.update(algorithm.state_dict())
        shown: dict[str, float] = dict(logs)
        if (
            eval_fn is not None
            and config.eval_every
            and (done % config.eval_every == 0 or done == steps)
        ):
            acc = eval_fn(algorithm)
            shown["val_acc"] = acc
            if acc > best_acc:  # ties keep the earlier checkpoint
                best_acc, best_state = acc, algorithm.state_dict()
        if done % 10 == 0 or "val_acc" in shown:
            bar.set_postfix({"step": done, **{k: round(v, 4) for k, v in shown.items()}})
        if config.checkpoint_every and done % config.checkpoint_every == 0 and done < steps:
            atomic_save(
                {
                    "stage": stage.name,
                    "step": done,
                    "student": algorithm.state_dict(),
                    "optimizer": algorithm.optimizer.state_dict(),
                    "generator": gen.get_state(),
                    "best_acc": best_acc,
                    "best_state": best_state,
                    "swa_n": average.n if average else 0,
                    "swa_state": average.state if average else None,
                },
                resume_path,
            )
    bar.close()
    result.stage_seconds[stage.name] = time.perf_counter() - t0

    if average is not None and average.n:
        algorithm.load_state_dict(average.state)
    elif best_state is not None:
        algorithm.load_state_dict(best_state)
    if best_acc >= 0:
        result.best_val[stage.name] = best_acc
    path = algorithm.save_stage(stage_path(workdir, stage), stage)
    resume_path.unlink(missing_ok=True)
    return path
