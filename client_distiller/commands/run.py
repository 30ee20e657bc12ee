"""Run leave-one-domain-out experiments: fetch, train (erm/kd/adip/sd), evaluate, report.

Teacher embeddings come from the cache where possible (a rerun spends zero queries) and
finished runs reuse their checkpoints. Results go to OUT/results.jsonl, OUT/tables.md and
OUT/*.png.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from client_distiller.algorithms import ALGORITHMS, HParams
from client_distiller.commands.common import (
    EXIT_OK,
    UserError,
    add_data_options,
    add_teacher_options,
    teacher_from_args,
)
from client_distiller.data import resolve_dataset
from client_distiller.evaluate import ONLINE, ExperimentConfig, run_experiment
from client_distiller.plan import DEFAULT_PROMPTS
from client_distiller.results import load_records, markdown_table, write_report
from client_distiller.train import TrainConfig


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``run``."""
    add_data_options(parser)
    add_teacher_options(parser)
    g = parser.add_argument_group("experiment")
    g.add_argument(
        "--algorithms",
        type=_csv,
        default=["erm", "kd", "adip", "zeroshot"],
        help=f"comma list of {','.join(ALGORITHMS)} (default erm,kd,adip,zeroshot)",
    )
    g.add_argument("--seeds", type=_csv, default=["0"], help="comma list of seeds (default 0)")
    g.add_argument(
        "--views",
        type=_csv,
        default=["4"],
        help="teacher views per training image: K, a comma list (1,2,4,8) and/or "
        "'online' (a fresh paid view every step; default 4)",
    )
    g.add_argument("--view-seed", type=int, default=0, help="seed of the view bank")
    g.add_argument(
        "--prompts",
        nargs="+",
        default=list(DEFAULT_PROMPTS),
        metavar="TEMPLATE",
        help="prompt templates with one {} for the class (default 'a photo of a {}')",
    )
    g.add_argument(
        "--out",
        type=Path,
        default=Path("runs/experiment"),
        help="results, checkpoints and plots (default runs/experiment)",
    )
    s = parser.add_argument_group("student")
    s.add_argument(
        "--student",
        default="demo",
        help="timm architecture of the student, or 'demo' (the demo world's "
        "photo-pretrained student; default)",
    )
    s.add_argument(
        "--student-weights",
        default=None,
        metavar="FILE",
        help="weights file for the demo student (default: the shipped one)",
    )
    s.add_argument(
        "--student-size",
        type=int,
        default=None,
        help="student input size (default: the backbone's pretraining size)",
    )
    s.add_argument(
        "--no-pretrained",
        dest="pretrained",
        action="store_false",
        help="random-init student backbone (default: pretrained weights)",
    )
    t = parser.add_argument_group("training")
    t.add_argument(
        "--steps",
        type=int,
        default=300,
        help="steps per training stage (Distill, ERM, KD, SD; default 300)",
    )
    t.add_argument("--align-steps", type=int, default=300, help="Align steps (default 300)")
    t.add_argument(
        "--batch-size", type=int, default=32, help="images per source domain per step (default 32)"
    )
    t.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    t.add_argument(
        "--align-lr",
        type=float,
        default=1e-3,
        help="Adam learning rate of the Align stage (default 1e-3)",
    )
    t.add_argument("--weight-decay", type=float, default=0.0, help="Adam weight decay")
    t.add_argument(
        "--lam",
        type=float,
        default=0.5,
        help="ADiP/SD weight of the image term (1 - lam: text term; default 0.5)",
    )
    t.add_argument(
        "--kd-temperature",
        type=float,
        default=4.0,
        help="KD temperature, quoted at CLIP's logit scale of 100: the teacher's "
        "soft targets are softmax(100 cos / T) whatever its own scale "
        "(default 4)",
    )
    t.add_argument(
        "--train-bn",
        dest="freeze_bn",
        action="store_false",
        help="update BatchNorm statistics while training (default: frozen at the "
        "pretrained values in every stage of every algorithm, as the "
        "method's reference code does)",
    )
    t.add_argument("--kd-alpha", type=float, default=1.0, help="KD weight of the KL term")
    t.add_argument(
        "--eval-every",
        type=int,
        default=0,
        help="training-domain validation every N steps, keeping the best "
        "checkpoint (0: off, keep the last)",
    )
    t.add_argument(
        "--swa",
        action="store_true",
        help="average the weights over the second half of each stage (SWA)",
    )
    t.add_argument(
        "--checkpoint-every",
        type=int,
        default=50,
        help="resume checkpoint every N steps (default 50)",
    )
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--no-progress", dest="progress", action="store_false", help="no progress bars"
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="only rebuild OUT/tables.md and the plots from OUT/results.jsonl "
        "(every run recorded there; no teacher, no training)",
    )


def config_from_args(args: argparse.Namespace) -> ExperimentConfig:
    """The experiment described by the options (validated)."""
    unknown = [a for a in args.algorithms if a not in ALGORITHMS]
    if unknown:
        raise UserError(
            f"unknown algorithm(s) {', '.join(unknown)}; choose from {', '.join(ALGORITHMS)}"
        )
    if "sd" in args.algorithms and not args.local_teacher:
        raise UserError("sd is white-box: it needs --local-teacher (the teacher's weights)")
    views: list[int | str] = []
    for v in args.views:
        if v == ONLINE:
            views.append(ONLINE)
        elif v.isdigit() and int(v) >= 1:
            views.append(int(v))
        else:
            raise UserError(f"--views: {v!r} is neither a count >= 1 nor 'online'")
    try:
        seeds = [int(s) for s in args.seeds]
    except ValueError as exc:
        raise UserError(f"--seeds: {exc}") from exc
    if args.student == "demo":
        spec = {"kind": "demo"}
        if args.student_weights:
            spec["weights"] = str(Path(args.student_weights).resolve())
    elif args.student_weights:
        raise UserError("--student-weights applies to the demo student only")
    else:
        spec = {"kind": "timm", "name": args.student}
    return ExperimentConfig(
        algorithms=list(args.algorithms),
        seeds=seeds,
        views=views,
        out_dir=args.out,
        hp=HParams(
            lr=args.lr,
            align_lr=args.align_lr,
            weight_decay=args.weight_decay,
            lam=args.lam,
            kd_temperature=args.kd_temperature,
            kd_alpha=args.kd_alpha,
            freeze_bn=args.freeze_bn,
        ),
        loop=TrainConfig(
            steps=args.steps,
            align_steps=args.align_steps,
            batch_size=args.batch_size,
            eval_every=args.eval_every,
            swa=args.swa,
            checkpoint_every=args.checkpoint_every,
            progress=args.progress,
        ),
        backbone_spec=spec,
        pretrained=args.pretrained,
        student_size=args.student_size,
        prompts=list(args.prompts),
        holdout_fraction=args.holdout_fraction,
        split_seed=args.split_seed,
        view_seed=args.view_seed,
        progress=args.progress,
    )


def _print_tables(records: list[dict], views: list) -> None:
    for v in views:
        rs = [r for r in records if str(r["views"]) == str(v)]
        print(
            f"\nviews K = {v}: OOD accuracy on the held-out domain (columns), "
            f"mean ± SE over seeds, %"
        )
        print(markdown_table(rs, "ood_acc"))
        print(f"\nviews K = {v}: ID accuracy on the source out-splits, by held-out domain, %")
        print(markdown_table(rs, "id_acc"))


def run(args: argparse.Namespace) -> int:
    """Fetch what is missing, train every (target, views, seed, algorithm), print the tables."""
    torch.set_flush_denormal(True)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = config_from_args(args)
    results_path = config.out_dir / "results.jsonl"
    if args.report_only:
        if not results_path.is_file():
            raise UserError(f"no results yet: {results_path}")
        records = load_records(results_path)
        paths = write_report(records, config.out_dir)
        _print_tables(records, sorted({str(r["views"]) for r in records}))
        print(f"\ntables: {paths['tables']}; plots: {paths['per_domain']}, {paths['queries']}")
        return EXIT_OK
    data = str(args.data)
    if data != "demo" and not Path(data).is_dir():
        raise UserError(f"--data: no such folder: {data}")
    dataset = resolve_dataset(data)
    if not args.target_domain:
        raise UserError(
            f"--target-domain is required (a domain, a comma list or 'all'); "
            f"domains: {', '.join(dataset.domains)}"
        )
    targets = dataset.domains if args.target_domain == "all" else _csv(args.target_domain)
    for t in targets:
        if t not in dataset.domains:
            raise UserError(
                f"--target-domain {t!r} is not a domain of {dataset.root}; "
                f"domains: {', '.join(dataset.domains)}"
            )
    with teacher_from_args(args, stage="run") as teacher:
        sent0 = teacher.sent
        records = run_experiment(dataset, targets, teacher, config, dataset_name=str(args.data))
        sent = teacher.sent - sent0
        hits = teacher.cache_hits
        remaining = teacher.budget_remaining
    mine = {(r["target"], r["algorithm"], r["seed"], str(r["views"])) for r in records}
    shown = [
        r
        for r in load_records(results_path)
        if (r["target"], r["algorithm"], r["seed"], str(r["views"])) in mine
    ]
    paths = write_report(shown, config.out_dir)
    _print_tables(shown, config.views)
    print(
        f"\nteacher queries sent by this run: {sent} (cache hits: {hits}"
        + ("" if remaining is None else f", vendor budget remaining: {remaining}")
        + ")"
    )
    print(
        f"results: {results_path}; tables: {paths['tables']}; "
        f"plots: {paths['per_domain']}, {paths['queries']}"
    )
    return EXIT_OK
