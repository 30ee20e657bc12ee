"""The client does not depend on its demo: only the command line's edge module names it, and a
run, its checkpoints and ``predict`` work in a process where ``demo_world`` cannot be imported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.synthetic import write_domainbed

REPO = Path(__file__).resolve().parents[2]
EDGE = Path("client_distiller/commands/demo.py")

BLOCKED_RUN = """
import importlib.abc, json, sys

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "demo_world" or name.startswith("demo_world."):
            raise ImportError(f"{name} is blocked in this test")
        return None

sys.meta_path.insert(0, Blocker())
from client_distiller.cli import main
from client_distiller.models import load_student

data, out, cache = sys.argv[1:4]
code = main([
    "run", "--data", data, "--target-domain", "flat", "--local-teacher", "vl2v-tiny",
    "--student", "test_resnet", "--student-size", "32", "--no-pretrained",
    "--algorithms", "erm,sd,zeroshot", "--views", "1", "--steps", "2", "--batch-size", "2",
    "--cache-dir", cache, "--out", out, "--no-progress", "--threads", "1",
])
assert code == 0, code
records = [json.loads(line) for line in open(out + "/results.jsonl")]
for r in records:
    if r["checkpoint"]:
        load_student(r["checkpoint"])  # timm alone; the sd tower is the built-in vl2v-tiny
        image = next(iter(__import__("pathlib").Path(data, "noisy", "square").glob("*.png")))
        assert main(["predict", "--checkpoint", r["checkpoint"], str(image)]) == 0
assert not [m for m in sys.modules if m.split(".")[0] == "demo_world"], "demo_world imported"
print("OK", sorted(r["algorithm"] for r in records))
"""


def test_only_the_edge_module_names_the_demo() -> None:
    named = sorted(
        str(path.relative_to(REPO))
        for path in (REPO / "client_distiller").rglob("*.py")
        if "demo_world" in path.read_text(encoding="utf-8")
    )
    assert named == [str(EDGE)]


@pytest.mark.slow
def test_a_run_and_its_checkpoints_need_no_demo(tmp_path: Path) -> None:
    data = write_domainbed(tmp_path / "data", per_class=3)
    out = subprocess.run(
        [sys.executable, "-c", BLOCKED_RUN, str(data), str(tmp_path / "out"), str(tmp_path / "c")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "OK ['erm', 'sd', 'zeroshot']" in out.stdout
