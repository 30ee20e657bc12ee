"""Helpers shared by the benchmark scripts: results, teacher weights, memory, timing.

Every benchmark prints its ratios and writes ``runs/bench/<name>.json``:

    {"name", "argv", "started", "seconds", "machine", "rows": [Row...], "details": {...}}

A row is one line of the README's performance table (question, measured, target, pass).
Absolute times on these shared 2-core machines are noise; each row is a ratio of two things
measured side by side in the same run.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # scripts run as `python benchmarks/x.py`
    sys.path.insert(0, str(REPO_ROOT))

BENCH_DIR = REPO_ROOT / "runs" / "bench"


@dataclass
class Row:
    """One line of the performance table.

    Attributes:
        id: the issue's row number (1-9) or a memory row label ("mem-vendor", ...).
        question: what the row answers.
        measured: the figure as printed in the table (with units).
        target: the target as printed in the table.
        passed: whether the target was met (None: informational, no target).
        value: the headline number behind ``measured`` (for machines).
    """

    id: str
    question: str
    measured: str
    target: str
    passed: bool | None
    value: float | None = None


@dataclass
class Result:
    """What one benchmark script writes."""

    name: str
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.time)

    def write(self, out_dir: Path = BENCH_DIR) -> Path:
        """Write ``<out_dir>/<name>.json`` and print the rows."""
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{self.name}.json"
        payload = {
            "name": self.name,
            "command": command_line(),
            "argv": sys.argv,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self.started)),
            "seconds": round(time.time() - self.started, 1),
            "machine": machine_info(),
            "rows": [asdict(r) for r in self.rows],
            "details": self.details,
        }
        path.write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n")
        print_rows(self.rows)
        print(f"wrote {path.resolve()}")
        return path


def command_line() -> str:
    """This script's command line as a user would type it (default ``--out`` dropped)."""
    args = list(sys.argv[1:])
    if "--out" in args:
        i = args.index("--out")
        if i + 1 < len(args) and Path(args[i + 1]).resolve() == BENCH_DIR.resolve():
            del args[i : i + 2]
    script = Path(sys.argv[0]).resolve()
    try:
        script_s = str(script.relative_to(REPO_ROOT))
    except ValueError:
        script_s = str(script)
    return " ".join([".venv/bin/python", script_s, *args])


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def machine_info() -> dict[str, Any]:
    """CPU count, load average and commit: the context an absolute time needs."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "cpus": os.cpu_count(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "commit": commit,
    }


def print_rows(rows: list[Row]) -> None:
    """A plain table: row, question, measured, target, pass/miss."""
    table = [["row", "question", "measured", "target", "result"]]
    for r in rows:
        verdict = "-" if r.passed is None else ("pass" if r.passed else "MISS")
        table.append([r.id, r.question, r.measured, r.target, verdict])
    widths = [max(len(line[i]) for line in table) for i in range(5)]
    for j, line in enumerate(table):
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=False)).rstrip())
        if j == 0:
            print("  ".join("-" * w for w in widths))


# -- teacher weights -------------------------------------------------------------------------


@dataclass
class TeacherChoice:
    """Which open_clip model the benchmarks serve, and where its weights come from."""

    model: str
    pretrained: str | None  # checkpoint path / tag, None = random weights
    weights: str  # human description for the JSON and the tables
    config_dirs: list[str] = field(default_factory=list)  # where its open_clip config lives

    def knobs(self) -> dict[str, Any]:
        """The vendor settings that serve this model (``start_vendor`` knobs)."""
        knobs: dict[str, Any] = {"config_dirs": self.config_dirs} if self.config_dirs else {}
        if self.pretrained:
            knobs["pretrained"] = self.pretrained
        return knobs


def choose_teacher(model: str, scratch: Path) -> TeacherChoice:
    """The teacher to benchmark: the demo teacher with its shipped weights when they exist.

    Without the shipped checkpoint the demo architecture is served with random weights saved
    to ``scratch`` (the cost of a forward pass does not depend on the values, and
    ``set_flush_denormal`` keeps random weights from crawling). Every result records which.
    """
    from demo_world.assets import DEMO_TEACHER_MODEL, demo_teacher_checkpoint
    from demo_world.models import MODEL_CONFIG_DIR

    # The demo's architectures are defined in its config folder, which the vendor (and a local
    # teacher) must be given explicitly.
    dirs = [str(MODEL_CONFIG_DIR)] if (MODEL_CONFIG_DIR / f"{model}.json").is_file() else []
    if model != DEMO_TEACHER_MODEL:
        return TeacherChoice(model, None, f"{model} (random weights)", dirs)
    ckpt = demo_teacher_checkpoint()
    if ckpt.is_file():
        return TeacherChoice(model, str(ckpt), f"{model} (shipped {ckpt.name})", dirs)
    import open_clip
    import torch

    from demo_world.models import register_open_clip_configs

    register_open_clip_configs()
    scratch.mkdir(parents=True, exist_ok=True)
    path = scratch / f"random-{model}.pt"
    if not path.is_file():
        torch.manual_seed(0)
        net = open_clip.create_model(model, pretrained=None)
        torch.save(net.state_dict(), path)
    print(
        f"note: {ckpt} does not exist yet; serving {model} with RANDOM weights "
        f"(same compute, meaningless embeddings)",
        file=sys.stderr,
    )
    return TeacherChoice(model, str(path), f"{model} (random weights: {ckpt.name} missing)", dirs)


# -- statistics ------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation; nan for no values."""
    if not values:
        return float("nan")
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# -- memory ----------------------------------------------------------------------------------


def proc_status_kb(pid: int, field_name: str) -> int | None:
    """A ``/proc/<pid>/status`` field in kB (``VmHWM``: peak RSS, ``VmRSS``: current)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def _children(pid: int) -> list[int]:
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from ``/proc/*/task/*/children``)."""
    seen, todo = [], [pid]
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.append(p)
        todo += _children(p)
    return seen


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


class TreeMemorySampler:
    """Samples a process tree every ``interval`` s: peak summed RSS and each process's VmHWM.

    VmHWM is the kernel's own high-water mark, so a short spike between two samples is still
    counted for each process; the summed figure is only as fine as the sampling.
    """

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_total_kb = 0
        self.hwm_kb: dict[int, int] = {}
        self.names: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeMemorySampler:  # noqa: PYI034
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def sample(self) -> None:
        total = 0
        for p in process_tree(self.pid):
            rss = proc_status_kb(p, "VmRSS")
            hwm = proc_status_kb(p, "VmHWM")
            if rss is None:
                continue
            total += rss
            if hwm is not None:
                self.hwm_kb[p] = max(hwm, self.hwm_kb.get(p, 0))
            if p not in self.names:
                self.names[p] = cmdline(p)[:160]
        self.peak_total_kb = max(self.peak_total_kb, total)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def summary(self) -> dict[str, Any]:
        """Peak summed RSS and the per-process high-water marks, in MiB."""
        return {
            "peak_total_rss_mib": round(self.peak_total_kb / 1024, 1),
            "processes": [
                {"pid": p, "vmhwm_mib": round(kb / 1024, 1), "cmd": self.names.get(p, "")}
                for p, kb in sorted(self.hwm_kb.items(), key=lambda kv: -kv[1])
            ],
        }


def mib(kb: int | None) -> float | None:
    return None if kb is None else round(kb / 1024, 1)
