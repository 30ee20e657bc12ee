"""``python -m demo_world``: build, check and measure the demo world."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from demo_world.assets import WEIGHTS_DIR

SUMS_FILE = WEIGHTS_DIR / "SHA256SUMS"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_sums(path: Path = SUMS_FILE) -> dict[str, str]:
    """``{file name: sha256}`` from a ``sha256sum``-format file (empty if it does not exist)."""
    if not path.exists():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            out[name.lstrip("*")] = digest
    return out


def record_sum(path: Path) -> None:
    """Add or replace ``path``'s line in SHA256SUMS when it is a shipped weights file."""
    path = Path(path).resolve()
    if path.parent != WEIGHTS_DIR.resolve():
        return
    sums = read_sums()
    sums[path.name] = sha256_file(path)
    SUMS_FILE.write_text("".join(f"{d}  {n}\n" for n, d in sorted(sums.items())))


def _cmd_build_teacher(args: argparse.Namespace) -> int:
    from dataclasses import replace

    import torch

    from demo_world.build_teacher import RECIPES, build_teacher

    if args.model not in RECIPES:
        print(
            f"error: no recipe for {args.model!r}; choose from {', '.join(RECIPES)}",
            file=sys.stderr,
        )
        return 2
    overrides = {
        k: getattr(args, k)
        for k in ("steps", "batch", "corpus", "seed", "lr")
        if getattr(args, k) is not None
    }
    recipe = replace(RECIPES[args.model], **overrides)
    torch.set_flush_denormal(True)
    torch.set_num_threads(args.threads)
    # wall time depends on what else shares the cores; CPU time (all threads) does not
    t0, c0 = time.time(), time.process_time()
    out = build_teacher(
        args.out, recipe=recipe, progress=not args.quiet, snapshot_every=args.snapshot_every
    )
    record_sum(out)
    print(
        f"build-teacher: {out} sha256={sha256_file(out)} wall={time.time() - t0:.0f}s "
        f"cpu={time.process_time() - c0:.0f}s"
    )
    return 0


def _cmd_build_student(args: argparse.Namespace) -> int:
    import torch

    from demo_world.build_student import build_student

    torch.set_flush_denormal(True)
    torch.set_num_threads(args.threads)
    # wall time depends on what else shares the cores; CPU time (all threads) does not
    t0, c0 = time.time(), time.process_time()
    out = build_student(
        args.out,
        steps=args.steps,
        batch=args.batch,
        images=args.images,
        seed=args.seed,
        lr=args.lr,
        progress=not args.quiet,
    )
    record_sum(out)
    print(
        f"build-student: {out} sha256={sha256_file(out)} wall={time.time() - t0:.0f}s "
        f"cpu={time.process_time() - c0:.0f}s"
    )
    return 0


def _cmd_benchmark(args: argparse.Namespace) -> int:
    from demo_world.assets import ensure_demo_benchmark

    print(ensure_demo_benchmark(args.root, progress=not args.quiet))
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import torch

    from demo_world.evaluate import evaluate_world, format_table

    torch.set_flush_denormal(True)
    torch.set_num_threads(args.threads)
    res = evaluate_world(
        teacher=args.teacher,
        student=args.student,
        n_per_class=args.n_per_class,
        start=args.start,
        progress=not args.quiet,
        model_name=args.model,
    )
    print(format_table(res))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


def _cmd_premise(args: argparse.Namespace) -> int:
    import torch

    from demo_world.evaluate import evaluate_world, format_table
    from demo_world.premise import check_premise, erm_ood_by_style, format_premise, premise_json

    torch.set_flush_denormal(True)
    torch.set_num_threads(args.threads)
    evals = []
    for path in args.evals:
        evals.append(json.loads(Path(path).read_text()))
    for path in args.teachers:
        res = evaluate_world(teacher=path, model_name=args.model, progress=not args.quiet)
        print(f"## {path}\n\n{format_table(res)}\n")
        evals.append(res)
    if not evals:
        print("error: give --teachers and/or --evals", file=sys.stderr)
        return 2
    erm = erm_ood_by_style(args.erm_results, views=args.erm_views)
    criteria = check_premise(evals, erm)
    print(format_premise(criteria))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "evals": evals,
                    "erm_ood": erm,
                    "erm_results": str(args.erm_results),
                    "criteria": premise_json(criteria),
                },
                indent=2,
            )
            + "\n"
        )
    return 0 if all(c.passed for c in criteria) else 1


def _cmd_curve(args: argparse.Namespace) -> int:
    from demo_world.plots import plot_curve

    print(plot_curve(args.evals, args.out, title=args.title))
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    bad = 0
    for name, digest in read_sums().items():
        got = sha256_file(WEIGHTS_DIR / name) if (WEIGHTS_DIR / name).exists() else "missing"
        ok = got == digest
        bad += not ok
        print(f"{'OK ' if ok else 'BAD'} {name} {got}")
    return 1 if bad else 0


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m demo_world`` argument parser."""
    from demo_world import build_student as bs
    from demo_world import build_teacher as bt

    p = argparse.ArgumentParser(prog="python -m demo_world", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    r = bt.RECIPE
    t = sub.add_parser(
        "build-teacher",
        help=f"train the demo CLIP teacher ({r.model})",
        description="Train a demo teacher from its recipe; flags override the "
        "recipe's values (then the result is not the shipped checkpoint).",
    )
    t.add_argument(
        "--model",
        default=r.model,
        help=f"teacher recipe by architecture: {', '.join(bt.RECIPES)} "
        f"(default {r.model}, version {r.version})",
    )
    t.add_argument("--steps", type=int, default=None, help=f"default: the recipe's ({r.steps})")
    t.add_argument("--batch", type=int, default=None, help=f"default: the recipe's ({r.batch})")
    t.add_argument(
        "--corpus",
        type=int,
        default=None,
        help=f"captioned images (default: the recipe's, {r.corpus})",
    )
    t.add_argument("--seed", type=int, default=None, help=f"default: the recipe's ({r.seed})")
    t.add_argument("--lr", type=float, default=None, help=f"default: the recipe's ({r.lr})")
    t.add_argument(
        "--out",
        type=Path,
        default=None,
        help="default: the shipped checkpoint (only for the shipped recipe)",
    )
    t.add_argument(
        "--snapshot-every",
        type=int,
        default=0,
        help="also save <out>.step<N> every N steps (does not change the result)",
    )
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: on shared cores, more threads oversubscribe and "
        "run several times slower)",
    )
    t.set_defaults(func=_cmd_build_teacher)

    s = sub.add_parser("build-student", help="pre-train the demo timm student on photos only")
    s.add_argument("--steps", type=int, default=bs.DEFAULT_STEPS)
    s.add_argument("--batch", type=int, default=bs.DEFAULT_BATCH)
    s.add_argument("--images", type=int, default=bs.DEFAULT_IMAGES, help="photo images")
    s.add_argument("--seed", type=int, default=bs.DEFAULT_SEED)
    s.add_argument("--lr", type=float, default=bs.DEFAULT_LR)
    s.add_argument("--out", type=Path, default=None, help="default: the shipped checkpoint")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: on shared cores, more threads oversubscribe and "
        "run several times slower)",
    )
    s.set_defaults(func=_cmd_build_student)

    b = sub.add_parser("benchmark", help="generate the benchmark (if missing); print its path")
    b.add_argument(
        "--root",
        type=Path,
        default=None,
        help="data dir (default $VL2V_DATA_DIR or ~/.cache/vl2v/data)",
    )
    b.add_argument("--quiet", action="store_true", help="no progress bars")
    b.set_defaults(func=_cmd_benchmark)

    e = sub.add_parser("evaluate", help="teacher zero-shot and student linear-probe table")
    e.add_argument("--teacher", type=Path, default=None, help="default: shipped checkpoint")
    e.add_argument(
        "--model",
        default=None,
        help="the teacher's open_clip architecture (default: the shipped teacher's)",
    )
    e.add_argument("--student", type=Path, default=None, help="default: shipped checkpoint")
    e.add_argument("--n-per-class", type=int, default=80, help="images per class per style")
    e.add_argument("--start", type=int, default=0, help="first image index")
    e.add_argument("--json", type=Path, default=None, help="also write the results here")
    e.add_argument("--threads", type=int, default=1, help="torch threads")
    e.add_argument("--quiet", action="store_true", help="no progress bars")
    e.set_defaults(func=_cmd_evaluate)

    pr = sub.add_parser(
        "premise",
        help="check the world's premise (teacher vs student, ERM)",
        description="Evaluate teacher builds (the shipped one first, then the "
        "other seeds) and check the five premise criteria against ERM's OOD "
        "accuracy from a results file. Exit 0 when all hold, 1 otherwise.",
    )
    pr.add_argument(
        "--teachers",
        type=Path,
        nargs="*",
        default=[],
        help="teacher checkpoints to evaluate (the shipped one first)",
    )
    pr.add_argument(
        "--evals",
        type=Path,
        nargs="*",
        default=[],
        help="saved `evaluate --json` results to use before --teachers",
    )
    pr.add_argument("--model", default=None, help="the teachers' open_clip architecture")
    pr.add_argument(
        "--erm-results",
        type=Path,
        required=True,
        help="results.jsonl of `client-distiller run` with erm on every style",
    )
    pr.add_argument("--erm-views", default=None, help="only ERM records of this --views value")
    pr.add_argument("--json", type=Path, default=None, help="also write everything here")
    pr.add_argument("--threads", type=int, default=1, help="torch threads")
    pr.add_argument("--quiet", action="store_true", help="no progress bars")
    pr.set_defaults(func=_cmd_premise)

    c = sub.add_parser(
        "curve",
        help="plot teacher zero-shot accuracy against training steps",
        description="Plot `evaluate --json` results of a build's snapshots "
        "(files named ..._step<N>.json) as a training curve.",
    )
    c.add_argument("evals", type=Path, nargs="+", help="evaluate --json files, ..._step<N>.json")
    c.add_argument("--out", type=Path, required=True, help="PNG to write")
    c.add_argument("--title", default="Teacher zero-shot accuracy during training")
    c.set_defaults(func=_cmd_curve)

    v = sub.add_parser("verify", help="check the shipped weights against SHA256SUMS")
    v.set_defaults(func=_cmd_verify)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
