"""The published leave-one-domain-out table on the demo world, with its protocol.

Hyper-parameters are chosen by training-domain validation only (DomainBed's "training-domain
validation"): every run evaluates the source styles' out-splits every ``EVAL_EVERY`` steps and
keeps its best checkpoint; for each (algorithm, held-out style) the learning rate whose run
reached the best source-validation accuracy (seed 0) is chosen. The held-out style's images
never take part in any choice. Seeds 1 and 2 then rerun the chosen setting. The view sweep
(K = 1, 2, 4, 8, online) reruns ADiP at its chosen learning rate.

Phases (each resumable: a finished run is never rerun; each run is one ``client-distiller run``
subprocess with its own output folder, so several can run at once):

    python scripts/lodo_protocol.py grid      # seed 0, every learning rate of the grid
    python scripts/lodo_protocol.py final     # seeds 1, 2 at the chosen learning rates
    python scripts/lodo_protocol.py sweep     # ADiP, K = 1, 2, 8, online, seed 0
    python scripts/lodo_protocol.py report    # tables, per-seed differences, plots -> --publish
    python scripts/lodo_protocol.py all       # the four in order

Every run made is published (``grid.jsonl`` holds every grid point, not only the chosen ones).
The teacher is the shipped demo teacher, in process (``--local-teacher``: the same weights,
fingerprint and embeddings as the vendor serves; SD needs the weights anyway).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

TARGETS = ("cartoon", "painting", "photo", "sketch")
TRAINED = ("erm", "kd", "adip", "sd")
GRID_LRS = (1e-4, 3e-4, 1e-3)
SEEDS = (0, 1, 2)
#: Fixed a priori, not searched (the budget of a 2-core machine): steps per stage, Align's own
#: steps and rate (it fits one linear layer on frozen features), images per source style per
#: step (the reference's 32), KD's temperature (at CLIP's logit scale) and weight, lambda 0.5.
STEPS = 1000
ALIGN_STEPS = 500
ALIGN_LR = 1e-3
BATCH = 32
EVAL_EVERY = 100
VIEWS = 4
SWEEP_VIEWS = ("1", "2", "8", "online")


@dataclass(frozen=True)
class Plan:
    """Which algorithms, rates, seeds and styles a phase covers, in the order they run."""

    trained: tuple[str, ...]
    lrs: tuple[float, ...]
    seeds: tuple[int, ...]
    targets: tuple[str, ...]


#: ``full``: the protocol as designed (about 130 runs, days of one 2-core machine).
#: ``reduced``: what one working session affords, fixed before any distillation run finished:
#: erm, kd and adip (no sd: its white-box teacher runs in every step), seed 0 only, rates
#: {3e-4, 1e-3} (the two ERM held-out styles gridded first ranked 1e-3 first by source
#: validation on both and 1e-4 never first), styles ordered so whole styles finish first
#: (sketch second: the style `make demo` holds out).
PLANS = {
    "full": Plan(TRAINED, GRID_LRS, SEEDS, TARGETS),
    "reduced": Plan(("erm", "kd", "adip"), (3e-4, 1e-3), (0,), ("cartoon", "sketch", "painting", "photo")),
}  # fmt: skip


@dataclass(frozen=True)
class Job:
    """One ``client-distiller run`` invocation: one algorithm, style, seed, rate and K."""

    algorithm: str
    target: str
    seed: int
    lr: float | None  # None: zeroshot (nothing trained)
    views: str = str(VIEWS)
    #: Extra ``client-distiller run`` options of an ablation (part of its folder name).
    extra: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        lr = "none" if self.lr is None else f"{self.lr:g}"
        variant = "".join(f"_{a.lstrip('-')}" for a in self.extra)
        return f"{self.algorithm}{variant}/K{self.views}/lr{lr}/{self.target}/s{self.seed}"

    def out_dir(self, root: Path) -> Path:
        return root / "runs" / self.name

    def record(self, root: Path) -> dict | None:
        path = self.out_dir(root) / "results.jsonl"
        if not path.is_file():
            return None
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
        return json.loads(lines[-1]) if lines else None

    def argv(self, root: Path, args: argparse.Namespace) -> list[str]:
        cmd = [
            sys.executable, "-m", "client_distiller.cli", "run",
            "--data", "demo", "--target-domain", self.target,
            "--algorithms", self.algorithm, "--seeds", str(self.seed), "--views", self.views,
            "--local-teacher", args.teacher_model, "--local-pretrained", str(args.teacher),
            "--steps", str(STEPS), "--align-steps", str(ALIGN_STEPS),
            "--align-lr", f"{ALIGN_LR:g}", "--batch-size", str(BATCH),
            "--eval-every", str(EVAL_EVERY), "--threads", "1", "--no-progress",
            "--cache-dir", str(root / "cache"), "--out", str(self.out_dir(root)),
        ]  # fmt: skip
        if self.lr is not None:
            cmd += ["--lr", f"{self.lr:g}"]
        return cmd + list(self.extra)


def run_jobs(jobs: Sequence[Job], root: Path, args: argparse.Namespace) -> None:
    """Run the unfinished jobs, ``args.workers`` at a time, logging each to its own file."""
    todo = [j for j in jobs if j.record(root) is None]
    print(
        f"{len(jobs) - len(todo)} of {len(jobs)} runs already done; {len(todo)} to run", flush=True
    )
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "VL2V_DATA_DIR": str(root / "data"),
    }

    def one(job: Job) -> None:
        log = job.out_dir(root) / "run.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        with log.open("a") as f:
            rc = subprocess.call(
                job.argv(root, args), stdout=f, stderr=subprocess.STDOUT, env=env, cwd=REPO
            )
        rec = job.record(root)
        status = (
            f"FAILED rc={rc} (see {log})"
            if rc or rec is None
            else (
                f"ID {100 * rec['id_acc']:.1f} OOD {100 * rec['ood_acc']:.1f} val {_val(rec):.3f}"
            )
        )
        print(
            f"[{time.strftime('%H:%M:%S')}] {job.name}: {status} ({time.time() - t0:.0f} s)",
            flush=True,
        )

    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        list(pool.map(one, todo))


def _val(record: dict) -> float:
    """Source-validation accuracy the run selected its checkpoint by (its last stage's)."""
    best = record.get("best_val") or {}
    return float(best[list(best)[-1]]) if best else float("nan")


def grid_jobs(plan: Plan) -> list[Job]:
    jobs = [Job("zeroshot", t, 0, None) for t in TARGETS]
    jobs += [
        Job(a, t, 0, lr)
        for t in plan.targets
        for lr in sorted(plan.lrs, reverse=True)
        for a in plan.trained
    ]
    return jobs


def selection(root: Path, plan: Plan, strict: bool = True) -> dict[tuple[str, str], float]:
    """Chosen learning rate per (algorithm, held-out style): best source validation, seed 0.

    Ties go to the smaller rate. A missing grid run raises when ``strict``; otherwise that
    (algorithm, style) is left out (``report`` then says it was not run).
    """
    chosen = {}
    for a in plan.trained:
        for t in TARGETS:
            scored = []
            for lr in plan.lrs:
                rec = Job(a, t, 0, lr).record(root)
                if rec is None:
                    if strict:
                        raise SystemExit(f"grid run {a} {t} lr {lr:g} is missing: run `grid` first")
                    break
                scored.append((_val(rec), -lr, lr))
            else:
                chosen[(a, t)] = max(scored)[2]
    return chosen


def final_jobs(root: Path, plan: Plan) -> list[Job]:
    chosen = selection(root, plan)
    return [
        Job(a, t, s, chosen[(a, t)])
        for a in plan.trained
        for t in TARGETS
        for s in plan.seeds
        if s != 0
    ]


#: Source-validation ablations of ADiP on one fold (chosen after the grid showed ADiP at or
#: below ERM there, from its source-style diagnosis: the student fits its 4 fixed views of the
#: training images perfectly but the teacher's embeddings of unseen source images far less):
#: fresh views every step instead of 4 fixed ones, and more weight on the image term.
ABLATIONS = ((("--views", "online"), "online"), (("--lam", "0.9"), str(VIEWS)))


def ablation_jobs(root: Path, plan: Plan, target: str) -> list[Job]:
    chosen = selection(root, plan, strict=False)
    if ("adip", target) not in chosen:
        raise SystemExit(f"the adip grid for {target} is not finished: run `grid` first")
    lr = chosen[("adip", target)]
    jobs = []
    for extra, views in ABLATIONS:
        if extra[0] == "--views":
            jobs.append(Job("adip", target, 0, lr, views=views))
        else:
            jobs.append(Job("adip", target, 0, lr, views=views, extra=extra))
    return jobs


def control_jobs(root: Path, plan: Plan, target: str) -> list[Job]:
    """KD with fresh teacher views every step too: the fair baseline of ADiP's online ablation
    (with 4 fixed views every algorithm sees the same few augmentations). ERM is not rerun: the
    experiment runner trains only teacher-reading algorithms on online views (an ERM run with
    ``--views online`` records nothing)."""
    chosen = selection(root, plan, strict=False)
    if ("kd", target) not in chosen:
        return []
    return [Job("kd", target, 0, chosen[("kd", target)], views="online")]


def sweep_jobs(root: Path, plan: Plan) -> list[Job]:
    chosen = selection(root, plan)
    return [Job("adip", t, 0, chosen[("adip", t)], views=k) for t in TARGETS for k in SWEEP_VIEWS]


def _mean_se(values: Sequence[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, float("nan")
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, sd / math.sqrt(n)


def _cell(values: Sequence[float]) -> str:
    if not values:
        return "not run"
    mean, se = _mean_se([100 * v for v in values])
    return f"{mean:.1f}" if math.isnan(se) else f"{mean:.1f} ± {se:.1f}"


def every_run(root: Path) -> list[dict]:
    """Every finished run under ``root`` (grid, final, sweep and any other), in name order."""
    records = []
    for path in sorted((root / "runs").glob("**/results.jsonl")):
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
        if lines:
            record = json.loads(lines[-1])
            record["run"] = str(path.parent.relative_to(root / "runs"))
            records.append(record)
    return records


def report(root: Path, publish: Path, plan: Plan) -> None:
    """Write every run's record, the selection, the tables and the plots to ``publish``.

    Works on a partial set of runs: a cell whose runs are missing says ``not run``, and the
    header says how many of the plan's runs exist.
    """
    publish.mkdir(parents=True, exist_ok=True)
    chosen = selection(root, plan, strict=False)
    finals = [
        Job(a, t, s, chosen[(a, t)])
        for a in plan.trained
        for t in TARGETS
        for s in plan.seeds
        if (a, t) in chosen
    ]
    table = [r for r in (Job("zeroshot", t, 0, None).record(root) for t in TARGETS) if r]
    table += [r for r in (j.record(root) for j in finals) if r]
    sweep = [r for r in (j.record(root) for j in _sweep_candidates(chosen)) if r]
    runs = every_run(root)
    with (publish / "runs.jsonl").open("w") as f:
        for r in runs:
            f.write(json.dumps(r, sort_keys=True) + "\n")
    (publish / "selection.json").write_text(
        json.dumps({f"{a}/{t}": lr for (a, t), lr in sorted(chosen.items())}, indent=2) + "\n"
    )
    planned = len(grid_jobs(plan)) + len(plan.trained) * len(TARGETS) * (len(plan.seeds) - 1)
    done_grid = sum(j.record(root) is not None for j in grid_jobs(plan))
    seeds = "seed 0" if plan.seeds == (0,) else f"seeds {', '.join(map(str, plan.seeds))}"
    lines = [
        "# Leave-one-domain-out on the demo world (teacher v3)",
        "",
        (
            f"Protocol: {STEPS} steps per stage (Align {ALIGN_STEPS} at lr {ALIGN_LR:g}), "
            f"{BATCH} images per source style per step, K = {VIEWS} teacher views, frozen "
            f"BatchNorm, source validation every {EVAL_EVERY} steps keeping the best checkpoint; "
            f"learning rate per (algorithm, held-out style) chosen from {list(plan.lrs)} by the "
            f"best source-validation accuracy of seed 0 (never the held-out style); {seeds} at "
            "the chosen rate. Cells with several seeds: mean ± standard error; one seed: its "
            "value (zeroshot is deterministic)."
        ),
        "",
        (
            f"Runs: {done_grid} of the plan's {len(grid_jobs(plan))} grid runs finished "
            f"({planned} planned in all); {len(runs)} runs published in runs.jsonl. "
            "`not run`: the grid of that cell did not finish."
        ),
        "",
        "## OOD accuracy (held-out style's in-split, %)", "",
        *_table(table, "ood_acc", plan), "",
        "## ID accuracy (source styles' out-splits, %)", "",
        *_table(table, "id_acc", plan), "",
        "## Per-seed differences (OOD, points)", "",
        *_differences(table, plan), "",
        "## Chosen learning rates (source validation, seed 0)", "",
        "| algorithm | " + " | ".join(TARGETS) + " |", "|---|" + "---|" * len(TARGETS),
        *[f"| {a} | " + " | ".join(
            f"{chosen[(a, t)]:g}" if (a, t) in chosen else "not run" for t in TARGETS) + " |"
          for a in plan.trained], "",
        "## Every seed-0 run: source validation / OOD (%)", "",
        "| algorithm | lr | " + " | ".join(TARGETS) + " |", "|---|---|" + "---|" * len(TARGETS),
    ]  # fmt: skip
    lrs = sorted({r["hp"]["lr"] for r in runs if r["algorithm"] != "zeroshot"})
    for a in plan.trained:
        for lr in lrs:
            cells = []
            for t in TARGETS:
                r = Job(a, t, 0, lr).record(root)
                if r is None:
                    cells.append("-")
                    continue
                mark = " (chosen)" if chosen.get((a, t)) == lr else ""
                cells.append(f"{100 * _val(r):.1f} / {100 * r['ood_acc']:.1f}{mark}")
            if any(c != "-" for c in cells):
                lines.append(f"| {a} | {lr:g} | " + " | ".join(cells) + " |")
    ablated = []
    for t in TARGETS:
        if ("adip", t) not in chosen:
            continue
        for (extra, _), job in zip(ABLATIONS, ablation_jobs(root, plan, t), strict=True):
            record = job.record(root)
            if record is not None:
                ablated.append((t, " ".join(extra), record))
    if ablated:
        lines += [
            "",
            "## ADiP ablations (seed 0, the chosen rate; judged by source validation)",
            "",
            "| held-out style | variant | source validation | ID | OOD |",
            "|---|---|---|---|---|",
        ]
        shown: set[str] = set()
        for t, label, r in ablated:
            base = Job("adip", t, 0, chosen[("adip", t)]).record(root)
            rows = [(label, r)] if t in shown else [("adip (K = 4, lam 0.5)", base), (label, r)]
            shown.add(t)
            for name, rec in rows:
                if rec is not None:
                    lines.append(
                        f"| {t} | {name} | {100 * _val(rec):.1f} | {100 * rec['id_acc']:.1f} "
                        f"| {100 * rec['ood_acc']:.1f} |"
                    )
    controls = [
        (t, job, job.record(root))
        for t in TARGETS
        if ("adip", t) in chosen
        for job in control_jobs(root, plan, t)
    ]
    controls = [(t, job, r) for t, job, r in controls if r is not None]
    if controls:
        lines += [
            "",
            "## The baselines with fresh views every step too (seed 0, their chosen rates)",
            "",
            "| held-out style | algorithm | views | source validation | ID | OOD |",
            "|---|---|---|---|---|---|",
        ]
        for t, job, r in controls:
            for views, rec in ((str(VIEWS), Job(job.algorithm, t, 0, job.lr).record(root)),
                               ("online", r)):  # fmt: skip
                if rec is not None:
                    lines.append(
                        f"| {t} | {job.algorithm} | {views} | {100 * _val(rec):.1f} "
                        f"| {100 * rec['id_acc']:.1f} | {100 * rec['ood_acc']:.1f} |"
                    )
    if sweep:
        lines += [
            "",
            "## ADiP against teacher queries (seed 0, chosen rates)",
            "",
            "Only the held-out styles with sweep runs: "
            + ", ".join(sorted({r["target"] for r in sweep}))
            + ".",
            "",
            *_sweep_table(
                sweep
                + [
                    r
                    for r in table
                    if r["algorithm"] == "adip"
                    and not r["seed"]
                    and r["target"] in {x["target"] for x in sweep}
                ]
            ),
        ]
    (publish / "tables.md").write_text("\n".join(lines) + "\n")
    _plots(table, sweep, publish, plan)
    print((publish / "tables.md").read_text())


def _sweep_candidates(chosen: dict[tuple[str, str], float]) -> list[Job]:
    return [
        Job("adip", t, 0, chosen[("adip", t)], views=k)
        for t in TARGETS
        for k in SWEEP_VIEWS
        if ("adip", t) in chosen
    ]


def _table(records: list[dict], metric: str, plan: Plan) -> list[str]:
    out = [
        "| algorithm | " + " | ".join(TARGETS) + " | Avg |",
        "|---|" + "---|" * (len(TARGETS) + 1),
    ]
    for a in ("zeroshot", *plan.trained):
        rs = [r for r in records if r["algorithm"] == a]
        cells = [_cell([r[metric] for r in rs if r["target"] == t]) for t in TARGETS]
        avg = []
        for s in sorted({r["seed"] for r in rs}):
            per = [r[metric] for r in rs if r["seed"] == s]
            if len(per) == len(TARGETS):  # an average over all four styles only
                avg.append(sum(per) / len(TARGETS))
        out.append(f"| {a} | " + " | ".join(cells) + f" | {_cell(avg)} |")
    return out


def _differences(records: list[dict], plan: Plan) -> list[str]:
    by = {(r["algorithm"], r["target"], r["seed"]): r["ood_acc"] for r in records}
    out = [
        "| difference | " + " | ".join(TARGETS) + " | Avg | seeds with a gain (Avg) |",
        "|---|" + "---|" * (len(TARGETS) + 2),
    ]
    for other in ("erm", "kd"):
        per = {
            t: [
                100 * (by[("adip", t, s)] - by[(other, t, s)])
                for s in plan.seeds
                if ("adip", t, s) in by and (other, t, s) in by
            ]
            for t in TARGETS
        }
        full = [s for s in plan.seeds if all(("adip", t, s) in by and (other, t, s) in by
                                            for t in TARGETS)]  # fmt: skip
        avg = [
            sum(100 * (by[("adip", t, s)] - by[(other, t, s)]) for t in TARGETS) / len(TARGETS)
            for s in full
        ]
        cells = []
        for vals in [*per.values(), avg]:
            if not vals:
                cells.append("not run")
                continue
            m, se = _mean_se(vals)
            cells.append(f"{m:+.1f}" if math.isnan(se) else f"{m:+.1f} ± {se:.1f}")
        wins = f"{sum(v > 0 for v in avg)} of {len(avg)}" if avg else "-"
        out.append(f"| adip - {other} | " + " | ".join(cells) + f" | {wins} |")
    return out


def _sweep_table(records: list[dict]) -> list[str]:
    out = ["| K | image + text queries (mean per held-out style) | ID | OOD |", "|---|---|---|---|"]
    order = {"1": 0, "2": 1, "4": 2, "8": 3, "online": 4}
    for k in sorted({str(r["views"]) for r in records}, key=order.get):
        rs = [r for r in records if str(r["views"]) == k]
        q = sum(r["queries_used"] for r in rs) / len(rs)
        ood = sum(r["ood_acc"] for r in rs) / len(rs)
        idd = sum(r["id_acc"] for r in rs) / len(rs)
        out.append(f"| {k} | {q:,.0f} | {100 * idd:.1f} | {100 * ood:.1f} |")
    return out


def _plots(table: list[dict], sweep: list[dict], publish: Path, plan: Plan) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    algos = ("zeroshot", *plan.trained)
    fig, ax = plt.subplots(figsize=(9, 4.2), layout="constrained")
    width = 0.8 / len(algos)
    for i, a in enumerate(algos):
        xs, means, errs = [], [], []
        for j, t in enumerate(TARGETS):
            vals = [100 * r["ood_acc"] for r in table if r["algorithm"] == a and r["target"] == t]
            if not vals:
                continue  # not run: no bar (the table says so)
            m, se = _mean_se(vals)
            xs.append(j + (i - (len(algos) - 1) / 2) * width)
            means.append(m)
            errs.append(0 if math.isnan(se) else se)
        ax.bar(xs, means, width, yerr=errs if any(errs) else None, capsize=2, label=a)
    ax.set_xticks(range(len(TARGETS)), TARGETS)
    ax.set_xlabel("held-out style")
    ax.set_ylabel("OOD accuracy (%)")
    ax.set_ylim(0, 100)
    seeds = "seed 0" if plan.seeds == (0,) else f"mean ± SE over {len(plan.seeds)} seeds"
    ax.set_title(f"Leave-one-style-out on the demo world ({seeds}; missing bar: not run)")
    ax.legend(ncols=len(algos), loc="upper center", bbox_to_anchor=(0.5, -0.14), frameon=False)
    fig.savefig(publish / "ood_per_style.png", dpi=120)
    plt.close(fig)

    swept = {r["target"] for r in sweep}
    rows = sweep + [
        r for r in table if r["algorithm"] == "adip" and not r["seed"] and r["target"] in swept
    ]
    if sweep:
        fig, ax = plt.subplots(figsize=(6.5, 4.2), layout="constrained")
        order = {"1": 0, "2": 1, "4": 2, "8": 3, "online": 4}
        ks = sorted({str(r["views"]) for r in rows}, key=order.get)
        q = [_mean([r["queries_used"] for r in rows if str(r["views"]) == k]) for k in ks]
        acc = [100 * _mean([r["ood_acc"] for r in rows if str(r["views"]) == k]) for k in ks]
        ax.plot(q, acc, "o-")
        for k, x, y in zip(ks, q, acc, strict=True):
            ax.annotate(f"K={k}", (x, y), textcoords="offset points", xytext=(4, 4))
        ax.set_xscale("log")
        ax.set_xlabel("teacher queries per held-out style (log)")
        ax.set_ylabel(f"ADiP OOD accuracy, {', '.join(sorted(swept))} held out (%)")
        ax.set_title("Accuracy against queries (seed 0)")
        fig.savefig(publish / "accuracy_vs_queries.png", dpi=120)
        plt.close(fig)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "phase", choices=["grid", "final", "sweep", "ablate", "controls", "report", "all"]
    )
    p.add_argument(
        "--targets", help="grid/ablate: only these held-out styles (comma list; default all)"
    )
    p.add_argument(
        "--root",
        type=Path,
        default=REPO / "runs" / "lodo-v3",
        help="runs, cache and data (default runs/lodo-v3)",
    )
    p.add_argument(
        "--publish",
        type=Path,
        default=REPO / "docs" / "results" / "lodo-v3",
        help="where `report` writes (default docs/results/lodo-v3)",
    )
    p.add_argument("--workers", type=int, default=1, help="runs at once (one core each)")
    p.add_argument(
        "--plan", choices=sorted(PLANS), default="full", help="which runs (default full)"
    )
    p.add_argument("--teacher-model", default="vl2v-demo-v3")
    p.add_argument(
        "--teacher", type=Path, default=REPO / "demo_world" / "weights" / "demo_teacher_v3.pt"
    )
    args = p.parse_args(argv)
    root = args.root.resolve()
    plan = PLANS[args.plan]
    targets = args.targets.split(",") if args.targets else list(TARGETS)
    if args.phase in ("grid", "all"):
        run_jobs([j for j in grid_jobs(plan) if j.target in targets], root, args)
    if args.phase == "ablate":
        run_jobs([j for t in targets for j in ablation_jobs(root, plan, t)], root, args)
    if args.phase == "controls":
        run_jobs([j for t in targets for j in control_jobs(root, plan, t)], root, args)
    if args.phase in ("final", "all"):
        run_jobs(final_jobs(root, plan), root, args)
    if args.phase in ("sweep", "all"):
        run_jobs(sweep_jobs(root, plan), root, args)
    if args.phase in ("report", "all"):
        report(root, args.publish, plan)
    return 0


if __name__ == "__main__":
    sys.exit(main())
