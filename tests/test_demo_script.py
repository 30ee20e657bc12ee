"""`make demo`'s script: the learning rates it trains with, and what it says about them."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def demo(monkeypatch: pytest.MonkeyPatch):
    spec = importlib.util.spec_from_file_location("make_demo", ROOT / "scripts" / "demo.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "make_demo", module)
    spec.loader.exec_module(module)
    return module


def test_the_published_selection_is_what_make_demo_trains_with(demo) -> None:
    published = json.loads(demo.SELECTION.read_text()) if demo.SELECTION.is_file() else {}
    lrs, how = demo.chosen_rates("sketch", demo.TRAINED)
    for algorithm in demo.TRAINED:
        expected = published.get(f"{algorithm}/sketch", demo.DEFAULT_LR)
        assert lrs[algorithm] == pytest.approx(expected)
    if all(f"{a}/sketch" in published for a in demo.TRAINED):
        assert how.startswith("as the published protocol chose them")


def test_rates_name_their_source(demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    selection = tmp_path / "selection.json"
    monkeypatch.setattr(demo, "SELECTION", selection)
    lrs, how = demo.chosen_rates("sketch", ("erm", "kd"))
    assert lrs == {"erm": demo.DEFAULT_LR, "kd": demo.DEFAULT_LR}
    assert "no published choice for sketch" in how
    selection.write_text(json.dumps({"erm/sketch": 3e-4, "kd/cartoon": 1e-4}))
    lrs, how = demo.chosen_rates("sketch", ("erm", "kd"))
    assert lrs == {"erm": 3e-4, "kd": demo.DEFAULT_LR}
    assert how.startswith("erm as the published protocol chose") and "default 0.001" in how
    selection.write_text(json.dumps({"erm/sketch": 3e-4, "kd/sketch": 1e-3}))
    lrs, how = demo.chosen_rates("sketch", ("erm", "kd"))
    assert lrs == {"erm": 3e-4, "kd": 1e-3}
    assert how.startswith("as the published protocol chose them for this held-out style")


def test_help_names_the_budget(demo, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        demo.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert f"steps per stage ({demo.DEMO_STEPS}; the published table trains 1000)" in out
    assert "--eval-every" in out
