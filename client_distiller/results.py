"""Results: one typed record per run, JSON lines in, DomainBed-style tables and PNG plots out."""

from __future__ import annotations

import dataclasses
import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

#: Preferred row order in tables and plots; others follow alphabetically.
ALGORITHM_ORDER = ["zeroshot", "erm", "kd", "adip", "sd"]

#: ``--views online``: a fresh paid view of every training image at every step.
ONLINE: Literal["online"] = "online"
ViewSetting = int | Literal["online"]


@dataclass
class RunRecord:
    """One trained (or zero-shot) run: one line of ``results.jsonl``.

    The field names are the JSON keys (files written by earlier versions load unchanged).

    Attributes:
        dataset: the ``--data`` value.
        target: the held-out domain.
        algorithm: registry name (``erm``, ``kd``, ``adip``, ``sd``, ``zeroshot``).
        seed: the run's seed (initialization and batch order).
        views: K, or ``"online"``.
        id_acc: mean accuracy on the source domains' out-splits.
        ood_acc: accuracy on the target domain's in-split.
        per_domain: accuracy per domain (source out-splits, target in-split).
        queries_used: teacher queries the run consumes (training views + class texts; for
            zero-shot the evaluation images + class texts).
        online_queries: of those, fresh views queried during training (``--views online``).
        n_train_images: source training images.
        stage_seconds: wall seconds per trained stage (not counting reused stages).
        best_val: best training-domain validation accuracy per stage (``--eval-every``).
        resumed_from: the step each stage resumed from after an interruption.
        reused_stages: stages whose finished checkpoint was reused.
        seconds: wall seconds of the run.
        checkpoint: the final student checkpoint (None for zero-shot).
        hp: the hyper-parameters (``HParams`` as a dict).
        loop: the loop settings (``TrainConfig`` as a dict, with this run's seed).
        student: the student backbone (its description, e.g. ``{"kind": "demo"}``).
        teacher: ``{"id", "fingerprint"}`` of the teacher.
        time: when the run finished (Unix time).
        queries_sent_fetch: new queries sent while fetching this target's data.
    """

    dataset: str
    target: str
    algorithm: str
    seed: int
    views: ViewSetting
    id_acc: float
    ood_acc: float
    per_domain: dict[str, float]
    queries_used: int = 0
    online_queries: int = 0
    n_train_images: int = 0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    best_val: dict[str, float] = field(default_factory=dict)
    resumed_from: dict[str, int] = field(default_factory=dict)
    reused_stages: list[str] = field(default_factory=list)
    seconds: float = 0.0
    checkpoint: str | None = None
    hp: dict[str, Any] = field(default_factory=dict)
    loop: dict[str, Any] = field(default_factory=dict)
    student: dict[str, Any] = field(default_factory=dict)
    teacher: dict[str, Any] = field(default_factory=dict)
    time: float = 0.0
    queries_sent_fetch: int = 0

    @property
    def key(self) -> tuple[str, str, str, int, str]:
        """What identifies a run: a rerun with the same key replaces the earlier record."""
        return (self.dataset, self.target, self.algorithm, self.seed, str(self.views))

    def to_json(self) -> dict[str, Any]:
        """The record as the JSON object of one results line."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunRecord:
        """Read one results line (keys a newer version added are ignored, missing ones take
        their defaults)."""
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in data.items() if k in names}
        return cls(**{"dataset": "", **known})


def append_record(path: str | Path, record: RunRecord) -> None:
    """Append one result as a JSON line (flushed, so a killed run keeps finished results)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(record.to_json(), sort_keys=True) + "\n")
        f.flush()


def load_records(paths: str | Path | Iterable[str | Path]) -> list[RunRecord]:
    """Read result files; a rerun of the same (dataset, target, algorithm, seed, views) wins."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    latest: dict[tuple[str, str, str, int, str], RunRecord] = {}
    for path in paths:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            if line.strip():
                r = RunRecord.from_json(json.loads(line))
                latest[r.key] = r
    return list(latest.values())


def _order(names: Iterable[str]) -> list[str]:
    names = set(names)
    known = [n for n in ALGORITHM_ORDER if n in names]
    return known + sorted(names - set(known))


def _mean_se(values: Sequence[float]) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    se = float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else 0.0
    return float(v.mean()), se


def _cell(values: Sequence[float]) -> str:
    """``mean ± SE`` in %; one value alone has no error bar to show, so none is printed."""
    if not values:
        return "-"
    mean, se = _mean_se([100 * x for x in values])
    return f"{mean:.1f} ± {se:.1f}" if len(values) > 1 else f"{mean:.1f}"


def error_bars(records: Sequence[RunRecord]) -> bool:
    """Whether any (algorithm, held-out domain, views) was run with more than one seed, i.e.
    whether a table of these records shows any error bar."""
    seeds: dict[tuple[str, str, str], set[int]] = defaultdict(set)
    for r in records:
        seeds[(r.algorithm, r.target, str(r.views))].add(r.seed)
    return any(len(s) > 1 for s in seeds.values())


def markdown_table(
    records: Sequence[RunRecord],
    metric: Literal["ood_acc", "id_acc"] = "ood_acc",
    views: str | None = None,
) -> str:
    """DomainBed-style table: one row per algorithm, one column per held-out domain + Avg.

    Cells are mean ± standard error over seeds (in %), or the one value of a single seed.
    ``Avg`` averages each seed's accuracy over the held-out domains first (seeds missing a
    domain are left out of it), then takes mean ± SE over seeds, as DomainBed does.

    Args:
        records: result records.
        metric: ``ood_acc`` (target in-split) or ``id_acc`` (source out-splits).
        views: only records with this view setting (e.g. ``"4"`` or ``"online"``).
    """
    if views is not None:
        records = [r for r in records if str(r.views) == str(views)]
    targets = sorted({r.target for r in records})
    by: dict[str, dict[tuple[str, int], float]] = defaultdict(dict)  # alg -> (target, seed)
    for r in records:
        by[r.algorithm][(r.target, r.seed)] = getattr(r, metric)
    lines = [
        "| algorithm | " + " | ".join(targets) + " | Avg |",
        "|---|" + "---|" * (len(targets) + 1),
    ]
    for name in _order(by):
        vals = by[name]
        cells = [_cell([v for (t, _), v in vals.items() if t == target]) for target in targets]
        seeds = sorted({s for (_, s) in vals})
        avgs = [
            float(np.mean([vals[(t, s)] for t in targets]))
            for s in seeds
            if all((t, s) in vals for t in targets)
        ]
        cells.append(_cell(avgs))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def queries_table(records: Sequence[RunRecord], algorithm: str = "adip") -> str:
    """OOD (and ID) accuracy of one algorithm per view setting, with the queries it used."""
    rows: dict[str, list[RunRecord]] = defaultdict(list)
    for r in records:
        if r.algorithm == algorithm:
            rows[str(r.views)].append(r)

    def order(k: str) -> tuple:
        return (1, 0) if not k.isdigit() else (0, int(k))

    header = (
        "| views K | image+text queries per held-out domain | ID acc | OOD acc | runs "
        "(held-out domains x seeds; mean ± SE over them) |"
    )
    lines = [header, "|---|---|---|---|---|"]
    for k in sorted(rows, key=order):
        rs = rows[k]
        q = np.mean([r.queries_used for r in rs])
        lines.append(
            f"| {k} | {q:,.0f} | {_cell([r.id_acc for r in rs])} | "
            f"{_cell([r.ood_acc for r in rs])} | {len(rs)} |"
        )
    return "\n".join(lines)


#: Inches of figure per bar, and the least width of a bar plot's axes.
BAR_INCHES = 0.32
MIN_AXES_INCHES = 3.2


def _legend_below(ax: Any, ncols: int) -> None:
    """A legend under the axes: it never covers a bar or a tick, and the figure grows for it."""
    ax.legend(
        fontsize=8,
        ncols=max(1, ncols),
        loc="upper center",
        bbox_to_anchor=(0.5, -0.2),
        frameon=False,
    )


def per_domain_figure(records: Sequence[RunRecord], views: str | None = None) -> Any:
    """The figure of ``plot_per_domain`` (sized by its bars, labels and legend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if views is not None:
        records = [r for r in records if str(r.views) == str(views)]
    targets = sorted({r.target for r in records})
    names = _order({r.algorithm for r in records})
    width = 0.8 / max(1, len(names))
    # Wide enough for every bar, for the longest domain name under its group, and for the
    # legend in one row; tall enough for the legend's rows under the axes.
    group_inches = max(len(names) * BAR_INCHES, 0.09 * max((len(t) for t in targets), default=1))
    legend_cols = min(len(names), 5)
    legend_inches = sum(0.35 + 0.08 * len(n) for n in names[:legend_cols])
    axes_inches = max(MIN_AXES_INCHES, len(targets) * (group_inches + 0.25), legend_inches)
    legend_rows = -(-len(names) // max(1, legend_cols))
    fig, ax = plt.subplots(figsize=(axes_inches + 1.0, 3.4 + 0.22 * legend_rows))
    several = error_bars(records)
    for i, name in enumerate(names):
        means, ses = [], []
        for t in targets:
            vals = [100 * r.ood_acc for r in records if r.algorithm == name and r.target == t]
            m, s = _mean_se(vals) if vals else (float("nan"), 0.0)
            means.append(m)
            ses.append(s)
        xs = np.arange(len(targets)) + (i - (len(names) - 1) / 2) * width
        ax.bar(xs, means, width, yerr=ses if several else None, label=name, capsize=2)
    ax.set_xticks(np.arange(len(targets)), targets)
    ax.set_ylabel("OOD accuracy (%)")
    ax.set_xlabel("held-out domain")
    ax.set_ylim(0, 100)
    _legend_below(ax, legend_cols)
    spread = "mean ± SE over seeds" if several else "one seed"
    ax.set_title(f"Accuracy on the held-out domain\n(leave-one-domain-out, {spread})", fontsize=10)
    return fig


def plot_per_domain(
    records: Sequence[RunRecord], path: str | Path, views: str | None = None
) -> Path:
    """Grouped bars: OOD accuracy per held-out domain and algorithm (mean over seeds, ± SE
    where there are several)."""
    return _save_figure(per_domain_figure(records, views), path)


def queries_figure(records: Sequence[RunRecord]) -> Any:
    """The figure of ``plot_accuracy_vs_queries``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[tuple[str, str], list[RunRecord]] = defaultdict(list)
    for r in records:
        groups[(r.algorithm, str(r.views))].append(r)
    names = _order({a for a, _ in groups})
    legend_cols = min(len(names), 5)
    legend_rows = -(-len(names) // max(1, legend_cols))
    fig, ax = plt.subplots(figsize=(6.0, 3.6 + 0.22 * legend_rows))
    for name in names:
        pts = []
        for (a, k), rs in groups.items():
            if a != name:
                continue
            q = max(1.0, float(np.mean([r.queries_used for r in rs])))
            m, s = _mean_se([100 * r.ood_acc for r in rs])
            pts.append((q, m, s, k, len(rs)))
        pts.sort()
        ax.errorbar(
            [p[0] for p in pts],
            [p[1] for p in pts],
            yerr=[p[2] for p in pts] if any(p[4] > 1 for p in pts) else None,
            marker="o",
            capsize=2,
            label=name,
        )
        for q, m, _, k, _ in pts:
            if name == "adip" or len(pts) > 1:
                ax.annotate(f"K={k}", (q, m), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("teacher queries used per held-out domain (log; 0 drawn at 1)")
    ax.set_ylabel("OOD accuracy (%)")
    ax.set_ylim(0, 100)
    _legend_below(ax, legend_cols)
    ax.set_title("Accuracy against queries spent", fontsize=10)
    return fig


def plot_accuracy_vs_queries(records: Sequence[RunRecord], path: str | Path) -> Path:
    """OOD accuracy against teacher queries used, one point per (algorithm, views) setting."""
    return _save_figure(queries_figure(records), path)


def _save_figure(fig: Any, path: str | Path) -> Path:
    """Write ``fig`` to ``path`` as a PNG (creating its folder) and free it.

    ``bbox_inches="tight"`` grows the canvas to whatever the layout left outside it (a
    legend under the axes, a long tick label), so nothing is cut off.
    """
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight", pad_inches=0.1)
    plt.close(fig)
    return path


def write_report(records: Sequence[RunRecord], out_dir: str | Path) -> dict[str, Path]:
    """Write ``tables.md`` and the two plots into ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    view_settings = sorted({str(r.views) for r in records})
    parts = []
    for v in view_settings:
        rs = [r for r in records if str(r.views) == v]
        parts += [
            f"## views K = {v}",
            "",
            "OOD accuracy (held-out domain, %):",
            "",
            markdown_table(rs, "ood_acc"),
            "",
            "ID accuracy (source out-splits, %):",
            "",
            markdown_table(rs, "id_acc"),
            "",
        ]
    if len(view_settings) > 1:
        parts += ["## ADiP accuracy against queries", "", queries_table(records), ""]
    tables = out_dir / "tables.md"
    tables.write_text("\n".join(parts), encoding="utf-8")
    main_views = max(view_settings, key=lambda v: sum(str(r.views) == v for r in records))
    paths = {
        "tables": tables,
        "per_domain": plot_per_domain(
            records, out_dir / "accuracy_per_domain.png", views=main_views
        ),
        "queries": plot_accuracy_vs_queries(records, out_dir / "accuracy_vs_queries.png"),
    }
    return paths
