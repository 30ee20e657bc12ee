"""The premise checks: each criterion holds or fails on hand-made measurements, the ERM
reference is read from a results file, and the curve plot is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from demo_world.plots import curve_points, plot_curve
from demo_world.premise import check_premise, erm_ood_by_style, format_premise

STYLES = ("photo", "cartoon", "sketch", "painting")


def world(
    zs: dict[str, float],
    teacher_probe: float = 0.9,
    student_probe: float = 0.45,
    student_photo: float = 0.8,
) -> dict:
    """An ``evaluate_world`` result with the given numbers."""
    return {
        "zero_shot": {"photo": dict(zs), "style": dict(zs)},
        "ood": {
            s: {
                "student_probe": student_probe,
                "teacher_probe": teacher_probe,
                "teacher_zero_shot": zs[s],
                "teacher_zero_shot_photo_prompt": zs[s],
            }
            for s in STYLES
        },
        "in_style_probe": {"student_photo": student_photo, "teacher_photo": 0.99},
    }


GOOD = dict.fromkeys(STYLES, 0.9)
ERM = dict.fromkeys(STYLES, 0.6)


def test_a_strong_teacher_meets_every_criterion():
    criteria = check_premise([world(GOOD), world(GOOD), world(dict.fromkeys(STYLES, 0.88))], ERM)
    assert [c.number for c in criteria] == [1, 2, 3, 4, 5]
    assert all(c.passed for c in criteria), format_premise(criteria)
    assert "90.0 vs ERM 60.0 (+30.0)" in criteria[0].measured


def test_each_criterion_can_fail():
    weak = check_premise([world(dict.fromkeys(STYLES, 0.7))] * 3, ERM)
    assert not weak[0].passed  # < 75 %
    one_style = check_premise([world({**GOOD, "sketch": 0.55})] * 3, ERM)
    assert not one_style[1].passed and "sketch" in one_style[1].measured
    probe = check_premise([world(GOOD, teacher_probe=0.55)] * 3, ERM)
    assert not probe[2].passed
    photo = check_premise([world(GOOD, student_photo=0.95)] * 3, ERM)
    assert not photo[3].passed
    spread = check_premise([world(GOOD), world(GOOD), world(dict.fromkeys(STYLES, 0.85))], ERM)
    assert not spread[4].passed  # 5 points from the shipped seed
    assert not check_premise([world(GOOD)] * 2, ERM)[4].passed  # fewer than 3 seeds


def test_erm_reference_from_results(tmp_path: Path):
    lines = [
        {"algorithm": "erm", "target": s, "ood_acc": v, "views": 4}
        for s in STYLES
        for v in (0.5, 0.7)
    ]
    lines.append({"algorithm": "adip", "target": "photo", "ood_acc": 1.0, "views": 4})
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert erm_ood_by_style(path) == pytest.approx(dict.fromkeys(STYLES, 0.6))
    with pytest.raises(ValueError, match="no erm records"):
        erm_ood_by_style(path, views="8")


def test_curve_plot(tmp_path: Path):
    paths = []
    for step, acc in ((500, 0.5), (250, 0.3)):
        p = tmp_path / f"run_step{step}.json"
        p.write_text(json.dumps(world(dict.fromkeys(STYLES, acc))))
        paths.append(p)
    assert [s for s, _ in curve_points(paths)] == [250, 500]
    out = plot_curve(paths, tmp_path / "curve.png", title="a title")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
