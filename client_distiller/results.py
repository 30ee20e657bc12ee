"""Results: JSON lines in, DomainBed-style markdown tables and PNG plots out."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: Preferred row order in tables and plots; others follow alphabetically.
ALGORITHM_ORDER = ["zeroshot", "erm", "kd", "adip", "sd"]


def append_record(path: str | Path, record: dict[str, Any]) -> None:
    """Append one result as a JSON line (flushed, so a killed run keeps finished results)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")
        f.flush()


def _key(r: dict[str, Any]) -> tuple:
    return (r.get("dataset"), r["target"], r["algorithm"], r["seed"], str(r["views"]))


def load_records(paths: str | Path | Iterable[str | Path]) -> list[dict[str, Any]]:
    """Read result files; a rerun of the same (dataset, target, algorithm, seed, views) wins."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    latest: dict[tuple, dict[str, Any]] = {}
    for path in paths:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            if line.strip():
                r = json.loads(line)
                latest[_key(r)] = r
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
    if not values:
        return "-"
    mean, se = _mean_se([100 * x for x in values])
    return f"{mean:.1f} ± {se:.1f}"


def markdown_table(
    records: Sequence[dict[str, Any]], metric: str = "ood_acc", views: str | None = None
) -> str:
    """DomainBed-style table: one row per algorithm, one column per held-out domain + Avg.

    Cells are mean ± standard error over seeds (in %). ``Avg`` averages each seed's accuracy
    over the held-out domains first (seeds missing a domain are left out of it), then takes
    mean ± SE over seeds, as DomainBed does.

    Args:
        records: result records.
        metric: ``ood_acc`` (target in-split) or ``id_acc`` (source out-splits).
        views: only records with this view setting (e.g. ``"4"`` or ``"online"``).
    """
    if views is not None:
        records = [r for r in records if str(r["views"]) == str(views)]
    targets = sorted({r["target"] for r in records})
    by = defaultdict(dict)  # (algorithm) -> {(target, seed): value}
    for r in records:
        by[r["algorithm"]][(r["target"], r["seed"])] = r[metric]
    lines = [
        "| algorithm | " + " | ".join(targets) + " | Avg |",
        "|---|" + "---|" * (len(targets) + 1),
    ]
    for name in _order(by):
        vals = by[name]
        cells = [_cell([v for (t, _), v in vals.items() if t == target]) for target in targets]
        seeds = sorted({s for (_, s) in vals})
        avgs = [
            np.mean([vals[(t, s)] for t in targets])
            for s in seeds
            if all((t, s) in vals for t in targets)
        ]
        cells.append(_cell(avgs))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def queries_table(records: Sequence[dict[str, Any]], algorithm: str = "adip") -> str:
    """OOD (and ID) accuracy of one algorithm per view setting, with the queries it used."""
    rows = defaultdict(list)
    for r in records:
        if r["algorithm"] == algorithm:
            rows[str(r["views"])].append(r)

    def order(k: str) -> tuple:
        return (1, 0) if not k.isdigit() else (0, int(k))

    header = (
        "| views K | image+text queries per held-out domain | ID acc | OOD acc | runs "
        "(held-out domains x seeds; mean ± SE over them) |"
    )
    lines = [header, "|---|---|---|---|---|"]
    for k in sorted(rows, key=order):
        rs = rows[k]
        q = np.mean([r["queries_used"] for r in rs])
        lines.append(
            f"| {k} | {q:,.0f} | {_cell([r['id_acc'] for r in rs])} | "
            f"{_cell([r['ood_acc'] for r in rs])} | {len(rs)} |"
        )
    return "\n".join(lines)


def plot_per_domain(
    records: Sequence[dict[str, Any]], path: str | Path, views: str | None = None
) -> Path:
    """Grouped bars: OOD accuracy per held-out domain and algorithm (mean over seeds, ± SE)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if views is not None:
        records = [r for r in records if str(r["views"]) == str(views)]
    targets = sorted({r["target"] for r in records})
    names = _order({r["algorithm"] for r in records})
    width = 0.8 / max(1, len(names))
    fig, ax = plt.subplots(figsize=(1.6 + 1.5 * len(targets), 3.6))
    for i, name in enumerate(names):
        means, ses = [], []
        for t in targets:
            vals = [
                100 * r["ood_acc"] for r in records if r["algorithm"] == name and r["target"] == t
            ]
            m, s = _mean_se(vals) if vals else (float("nan"), 0.0)
            means.append(m)
            ses.append(s)
        xs = np.arange(len(targets)) + (i - (len(names) - 1) / 2) * width
        ax.bar(xs, means, width, yerr=ses, label=name, capsize=2)
    ax.set_xticks(np.arange(len(targets)), targets)
    ax.set_ylabel("OOD accuracy (%)")
    ax.set_xlabel("held-out domain")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8, ncols=min(5, len(names)))
    ax.set_title("Leave-one-domain-out accuracy on the held-out domain")
    return _save_figure(fig, path)


def plot_accuracy_vs_queries(records: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """OOD accuracy against teacher queries used, one point per (algorithm, views) setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = defaultdict(list)
    for r in records:
        groups[(r["algorithm"], str(r["views"]))].append(r)
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for name in _order({a for a, _ in groups}):
        pts = []
        for (a, k), rs in groups.items():
            if a != name:
                continue
            q = max(1.0, float(np.mean([r["queries_used"] for r in rs])))
            m, s = _mean_se([100 * r["ood_acc"] for r in rs])
            pts.append((q, m, s, k))
        pts.sort()
        ax.errorbar(
            [p[0] for p in pts],
            [p[1] for p in pts],
            yerr=[p[2] for p in pts],
            marker="o",
            capsize=2,
            label=name,
        )
        for q, m, _, k in pts:
            if name == "adip" or len(pts) > 1:
                ax.annotate(f"K={k}", (q, m), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("teacher queries used per held-out domain (log scale; 0 drawn at 1)")
    ax.set_ylabel("OOD accuracy (%)")
    ax.legend(fontsize=8)
    ax.set_title("Accuracy against queries spent")
    return _save_figure(fig, path)


def _save_figure(fig, path: str | Path) -> Path:
    """Write ``fig`` to ``path`` as a PNG (creating its folder) and free it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(records: Sequence[dict[str, Any]], out_dir: str | Path) -> dict[str, Path]:
    """Write ``tables.md`` and the two plots into ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    view_settings = sorted({str(r["views"]) for r in records})
    parts = []
    for v in view_settings:
        rs = [r for r in records if str(r["views"]) == v]
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
    main_views = max(view_settings, key=lambda v: sum(str(r["views"]) == v for r in records))
    paths = {
        "tables": tables,
        "per_domain": plot_per_domain(
            records, out_dir / "accuracy_per_domain.png", views=main_views
        ),
        "queries": plot_accuracy_vs_queries(records, out_dir / "accuracy_vs_queries.png"),
    }
    return paths
