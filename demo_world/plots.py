"""Plots of the demo world's measurements (the teacher's training curve)."""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Sequence
from pathlib import Path


def curve_points(paths: Sequence[Path]) -> list[tuple[int, dict[str, float]]]:
    """``(step, {style: zero-shot accuracy with the photo prompt})`` from ``evaluate --json``
    files named ``..._step<N>.json`` (sorted by step)."""
    points = []
    for path in paths:
        match = re.search(r"step(\d+)", Path(path).stem)
        if match is None:
            raise ValueError(f"{path}: no step<N> in the file name")
        res = json.loads(Path(path).read_text())
        points.append((int(match.group(1)), res["zero_shot"]["photo"]))
    return sorted(points)


def plot_curve(paths: Sequence[Path], out: Path, *, title: str) -> Path:
    """Teacher zero-shot accuracy per style and its mean against training steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = curve_points(paths)
    steps = [s for s, _ in points]
    styles = list(points[0][1])
    fig, ax = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
    for style in styles:
        ax.plot(steps, [100 * acc[style] for _, acc in points], "o-", lw=1, ms=3, label=style)
    mean = [100 * sum(acc.values()) / len(acc) for _, acc in points]
    ax.plot(steps, mean, "k-", lw=2.5, label="mean")
    ax.set_xlabel("training step (batch 128)")
    ax.set_ylabel("zero-shot accuracy, `a photo of a {}` (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.set_title("\n".join(textwrap.wrap(title, 70)), fontsize=10)  # never cut at the edge
    ax.legend(loc="lower right", fontsize=8)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
