"""Options and helpers shared by the CLI commands.

Each command module exposes ``add_arguments(parser)`` and ``run(args) -> int``; they compose
the option groups below so every command spells the same option the same way.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from client_distiller.data import DatasetError, DomainFolder, resolve_dataset
from client_distiller.plan import DEFAULT_PROMPTS, Plan, build_plan
from client_distiller.teacher import CachedTeacher, open_teacher

#: Exit codes: 0 done; 1 error (bad input, vendor failure); 2 usage (argparse);
#: 3 the vendor's budget ran out (402); 4 the client's --max-queries cap stopped the run.
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_BUDGET, EXIT_CAP = 0, 1, 2, 3, 4


class UserError(Exception):
    """A mistake in the command line or the environment: printed without a traceback."""


def default_cache_dir() -> Path:
    """``$VL2V_CACHE_DIR``, else ``~/.cache/vl2v``."""
    env = os.environ.get("VL2V_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "vl2v"


def add_cache_option(parser: argparse.ArgumentParser) -> None:
    """``--cache-dir`` (env ``VL2V_CACHE_DIR``)."""
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=default_cache_dir(),
        help="teacher cache and budget ledger (env VL2V_CACHE_DIR; default %(default)s)",
    )


def add_teacher_options(parser: argparse.ArgumentParser, *, cap: bool = True) -> None:
    """Where the teacher is: the vendor (endpoint + key) or a local white-box model."""
    g = parser.add_argument_group("teacher")
    g.add_argument(
        "--endpoint",
        default=os.environ.get("VL2V_ENDPOINT"),
        help="vendor base URL, e.g. http://127.0.0.1:8000 (env VL2V_ENDPOINT)",
    )
    g.add_argument(
        "--api-key",
        default=os.environ.get("VL2V_API_KEY"),
        help="vendor API key (env VL2V_API_KEY)",
    )
    g.add_argument(
        "--local-teacher",
        metavar="MODEL",
        default=None,
        help="use an open_clip model in process instead of the vendor (white-box)",
    )
    g.add_argument(
        "--local-pretrained",
        metavar="P",
        default=None,
        help="pretrained tag or checkpoint for --local-teacher",
    )
    g.add_argument("--concurrency", type=int, default=4, help="requests in flight (default 4)")
    if cap:
        g.add_argument(
            "--max-queries",
            type=int,
            default=None,
            help="hard cap on queries this run may send (checked before each request)",
        )
    add_cache_option(parser)


def add_data_options(parser: argparse.ArgumentParser) -> None:
    """The dataset and the leave-one-domain-out split."""
    g = parser.add_argument_group("data")
    g.add_argument(
        "--data",
        default="demo",
        help="dataset folder root/<domain>/<class>/<image>, or 'demo' (default)",
    )
    g.add_argument("--target-domain", default=None, help="held-out (test) domain")
    g.add_argument(
        "--holdout-fraction",
        type=float,
        default=0.2,
        help="out-split fraction of each domain (default 0.2)",
    )
    g.add_argument("--split-seed", type=int, default=0, help="seed of the in/out split")


def add_plan_options(parser: argparse.ArgumentParser) -> None:
    """The teacher queries of a run: views per image, prompts, zero-shot evaluation images."""
    g = parser.add_argument_group("teacher queries")
    g.add_argument("--views", type=int, default=1, help="teacher views per training image (K)")
    g.add_argument("--view-seed", type=int, default=0, help="seed of the view bank")
    g.add_argument(
        "--prompts",
        nargs="+",
        default=list(DEFAULT_PROMPTS),
        metavar="TEMPLATE",
        help="prompt templates with one {} for the class (default 'a photo of a {}')",
    )
    g.add_argument(
        "--no-zeroshot",
        dest="zeroshot",
        action="store_false",
        help="do not embed the evaluation images (no teacher zero-shot reference)",
    )


def dataset_from_args(args: argparse.Namespace) -> DomainFolder:
    """Open ``--data`` and check ``--target-domain``."""
    data = str(args.data)
    if data != "demo" and not Path(data).is_dir():
        raise UserError(f"--data: no such folder: {data}")
    dataset = resolve_dataset(data, progress=True)
    if dataset.skipped:
        print(
            f"warning: skipped {len(dataset.skipped)} unreadable image(s), e.g. "
            f"{dataset.skipped[0].path} ({dataset.skipped[0].reason})"
        )
    if args.target_domain is None:
        raise UserError(f"--target-domain is required; domains: {', '.join(dataset.domains)}")
    if args.target_domain not in dataset.domains:
        raise UserError(
            f"--target-domain {args.target_domain!r} is not a domain of "
            f"{dataset.root}; domains: {', '.join(dataset.domains)}"
        )
    return dataset


def plan_from_args(args: argparse.Namespace, dataset: DomainFolder | None = None) -> Plan:
    """The plan described by the data and plan options."""
    dataset = dataset or dataset_from_args(args)
    try:
        return build_plan(
            dataset,
            args.target_domain,
            views=args.views,
            prompts=args.prompts,
            zeroshot=args.zeroshot,
            holdout_fraction=args.holdout_fraction,
            split_seed=args.split_seed,
            view_seed=args.view_seed,
        )
    except DatasetError as exc:
        raise UserError(str(exc)) from exc


def teacher_from_args(
    args: argparse.Namespace, *, stage: str, max_queries: int | None = None
) -> CachedTeacher:
    """The cached, metered teacher described by the teacher options."""
    if max_queries is None:
        max_queries = getattr(args, "max_queries", None)
    if max_queries is not None and max_queries < 0:
        raise UserError("--max-queries must be >= 0")
    if args.concurrency < 1:
        raise UserError("--concurrency must be >= 1")
    return open_teacher(
        endpoint=args.endpoint,
        api_key=args.api_key,
        cache_dir=args.cache_dir,
        local_model=args.local_teacher,
        local_pretrained=args.local_pretrained,
        max_queries=max_queries,
        stage=stage,
        concurrency=args.concurrency,
    )


def print_table(headers: list[str], rows: list[list], *, file=None) -> None:
    """A plain aligned text table (numbers right-aligned)."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [
        all(isinstance(r[i], (int, float)) for r in rows) and rows for i in range(len(headers))
    ]
    for j, r in enumerate(cells):
        line = "  ".join(
            c.rjust(w) if numeric[i] else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=False))
        )
        print(line.rstrip(), file=file)
        if j == 0:
            print("  ".join("-" * w for w in widths), file=file)


def _fmt(c) -> str:
    if isinstance(c, float):
        return f"{c:,.4f}".rstrip("0").rstrip(".") if c else "0"
    if c is None:
        return "-"
    return str(c)
