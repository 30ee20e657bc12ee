"""The typed run record: one definition, the JSON keys results files have always had."""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path

import pytest

from client_distiller.results import RunRecord, append_record, load_records, markdown_table

REPO = Path(__file__).resolve().parents[2]
PUBLISHED = REPO / "docs" / "results" / "lodo-demo-results.jsonl"


def test_published_results_load_and_write_back_unchanged(tmp_path: Path) -> None:
    lines = [json.loads(line) for line in PUBLISHED.read_text().splitlines() if line.strip()]
    assert {f.name for f in dataclasses.fields(RunRecord)} == set(lines[0])
    for line in lines:
        assert RunRecord.from_json(line).to_json() == line
    records = load_records(PUBLISHED)
    assert len({r.key for r in records}) == len(records) == len({_key(x) for x in lines})
    out = tmp_path / "results.jsonl"
    for r in records:
        append_record(out, r)
    assert [RunRecord.from_json(json.loads(x)) for x in out.read_text().splitlines()] == records
    table = markdown_table(records, "ood_acc", views="4")
    assert table.splitlines()[0] == "| algorithm | cartoon | painting | photo | sketch | Avg |"
    assert any(row.startswith("| adip |") for row in table.splitlines())


def test_a_rerun_replaces_the_earlier_record_and_unknown_keys_are_ignored(tmp_path) -> None:
    base = {"dataset": "demo", "target": "sketch", "algorithm": "erm", "seed": 0, "views": 4}
    first = RunRecord(**base, id_acc=0.5, ood_acc=0.4, per_domain={"sketch": 0.4})
    path = tmp_path / "results.jsonl"
    append_record(path, first)
    newer = {**first.to_json(), "ood_acc": 0.6, "a_key_from_a_newer_version": 1}
    path.write_text(path.read_text() + json.dumps(newer) + "\n")
    (only,) = load_records(path)
    assert only.ood_acc == 0.6 and only.key == ("demo", "sketch", "erm", 0, "4")


def _key(line: dict) -> tuple:
    return (line["dataset"], line["target"], line["algorithm"], line["seed"], str(line["views"]))


def _layout(fig):
    import matplotlib

    fig.tight_layout()
    renderer = fig.canvas.get_renderer()
    texts = [t for t in fig.findobj(matplotlib.text.Text) if t.get_visible() and t.get_text()]
    return renderer, texts


@pytest.mark.parametrize("n_domains", [1, 2, 4])
@pytest.mark.parametrize("seeds", [1, 3])
def test_plots_fit_their_content(n_domains: int, seeds: int) -> None:
    import matplotlib.pyplot as plt

    from client_distiller.results import per_domain_figure, queries_figure

    domains = ("sketch", "photo", "cartoon", "painting")[:n_domains]
    records = [r for r in load_records(PUBLISHED) if r.target in domains and r.seed < seeds]
    for fig in (per_domain_figure(records, views="4"), queries_figure(records)):
        renderer, _ = _layout(fig)
        ax = fig.axes[0]
        page = fig.bbox
        title = ax.title.get_window_extent(renderer)
        # The title fits the figure's own width (a 3.1-inch figure cut it).
        assert page.x0 - 1 <= title.x0 and title.x1 <= page.x1 + 1, (title, page)
        # The legend sits under the axes: it covers no bar, point or tick label.
        legend = ax.get_legend().get_window_extent(renderer)
        ticks = [t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_text()]
        assert legend.y1 <= min([ax.bbox.y0, *(t.y0 for t in ticks)]) + 1
        # Domain names under their groups do not run into each other.
        for a, b in itertools.pairwise(ticks):
            assert a.x1 <= b.x0, (a, b)
        plt.close(fig)
    if n_domains == 4:
        wide = per_domain_figure(records, views="4")
        assert wide.get_size_inches()[0] > per_domain_figure(records[:1]).get_size_inches()[0]
        plt.close("all")


def test_the_spend_plot_shows_small_groups_and_time() -> None:
    import matplotlib.pyplot as plt

    from client_distiller.commands.report import spend_figure
    from client_distiller.teacher import SpendRow

    rows = [
        SpendRow("run", "class-texts", "texts", 7, 7, 0),
        SpendRow("run", "train-views", "images", 5376, 5376, 0),
    ]
    t0 = 1_700_000_000.0
    timeline = [(t0, 7, 0, 9993), (t0 + 60, 5376, 0, 4617), (t0 + 3600, 0, 5383, None)]
    fig = spend_figure(rows, timeline)
    renderer, texts = _layout(fig)
    left, right = fig.axes
    heights = [p.get_window_extent(renderer).height for p in left.patches if p.get_height() > 0]
    assert min(heights) >= 5  # the 7-text bar is a bar, not a sliver at the axis
    assert {"7", "5,376"} <= {t.get_text() for t in texts}  # and the counts are written
    assert right.get_xlabel() == "time (local)" and "ledger event" not in right.get_xlabel()
    plt.close(fig)
