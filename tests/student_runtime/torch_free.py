"""Run the student runtime in a fresh Python process where torch, timm and the client cannot be
imported (a ``sys.meta_path`` finder refuses them), and read back what it printed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]

#: Top-level packages the runtime must do without.
BLOCKED = ("torch", "timm", "torchvision", "open_clip", "client_distiller")

SCRIPT = """
import importlib.abc, json, sys

BLOCKED = set(sys.argv[1].split(","))

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked in this test")
        return None

sys.meta_path.insert(0, Blocker())
try:
    import torch  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("the blocker let torch through")

mode, args = sys.argv[2], sys.argv[3:]
if mode == "api":
    from student_runtime import Student

    student = Student(args[0], threads=1)
    predictions = student.predict(args[1:], top_k=len(student.classes))
    logits = student.logits(args[1:]).tolist()
    print(json.dumps({"classes": student.classes, "logits": logits,
                      "predictions": [[p.path, p.labels, p.probabilities] for p in predictions]}))
    code = 0
else:
    from student_runtime.__main__ import main

    code = main(args)
loaded = sorted({m.split(".")[0] for m in sys.modules} & BLOCKED)
print("BLOCKED-LOADED", json.dumps(loaded), file=sys.stderr)
sys.exit(code)
"""


def run_torch_free(
    mode: str, args: Sequence[str | os.PathLike[str]]
) -> subprocess.CompletedProcess:
    """Run ``SCRIPT`` (``mode`` "api": Student(model).predict(images); "cli": the module's
    ``main(args)``) and check that none of ``BLOCKED`` was loaded."""
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, ",".join(BLOCKED), mode, *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    marker = [line for line in proc.stderr.splitlines() if line.startswith("BLOCKED-LOADED")]
    assert marker, proc.stderr[-3000:]
    assert json.loads(marker[-1].split(" ", 1)[1]) == [], marker
    return proc


def predict_torch_free(model: Path, images: Sequence[Path]) -> dict[str, Any]:
    """``Student(model).predict(images)`` and the logits, computed without torch."""
    proc = run_torch_free("api", [model, *images])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)
