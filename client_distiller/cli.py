"""``client-distiller``: estimate, fetch and report teacher spend (and, from the algorithms
package, run / predict / evaluate).

Each subcommand is a module in ``client_distiller.commands`` with ``add_arguments(parser)`` and
``run(args) -> int``; adding one is one line in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from client_distiller.commands import estimate, evaluate, fetch, predict, report, run
from client_distiller.commands.common import EXIT_BUDGET, EXIT_CAP, EXIT_ERROR, UserError
from client_distiller.data import DatasetError
from client_distiller.teacher import BudgetExhausted, QueryCapReached, TeacherError

COMMANDS = {
    "estimate": estimate,
    "fetch": fetch,
    "report": report,
    "run": run,
    "predict": predict,
    "evaluate": evaluate,
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one subparser per entry of ``COMMANDS``."""
    parser = argparse.ArgumentParser(
        prog="client-distiller",
        description="Distill a metered CLIP teacher into a small domain-generalizing student.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log retries and details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in COMMANDS.items():
        doc = (module.__doc__ or "").strip()
        p = sub.add_parser(name, help=doc.splitlines()[0] if doc else None, description=doc)
        module.add_arguments(p)
        p.set_defaults(_command=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; user errors print one line to stderr, never a traceback."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args._command.run(args))
    except BudgetExhausted as exc:
        print(f"error: vendor budget exhausted: {exc}", file=sys.stderr)
        return EXIT_BUDGET
    except QueryCapReached as exc:
        print(f"stopped: {exc}", file=sys.stderr)
        return EXIT_CAP
    except (UserError, DatasetError, TeacherError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted; everything fetched so far is cached", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
