"""``client-distiller``: estimate, fetch and report teacher spend; run, predict, evaluate, export.

The command line is one pydantic-settings model (``ClientDistiller``): each subcommand is a
model in ``client_distiller.commands`` with a ``run() -> int`` method, its flags and
``VL2V_*`` environment variables derived from its fields by pydantic-settings' CLI support
(``CliApp``, ``CliSubCommand``). Adding a command is one class and one field here.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from pydantic import Field, ValidationError
from pydantic_core import ErrorDetails
from pydantic_settings import (
    BaseSettings,
    CliApp,
    CliSettingsSource,
    CliSubCommand,
    SettingsConfigDict,
    SettingsError,
    get_subcommand,
)

from client_distiller.commands.common import (
    EXIT_BUDGET,
    EXIT_CAP,
    EXIT_ERROR,
    EXIT_USAGE,
    UserError,
)
from client_distiller.commands.estimate import Estimate
from client_distiller.commands.evaluate import Evaluate
from client_distiller.commands.export import Export
from client_distiller.commands.fetch import Fetch
from client_distiller.commands.options import verbatim
from client_distiller.commands.predict import Predict
from client_distiller.commands.report import Report
from client_distiller.commands.run import Run
from client_distiller.data import DatasetError
from client_distiller.teacher import BudgetExhausted, QueryCapReached, TeacherError


def _about(command: type[BaseSettings]) -> str:
    return (command.__doc__ or "").strip().splitlines()[0]


class ClientDistiller(BaseSettings):
    """Distill a metered CLIP teacher into a small domain-generalizing student."""

    model_config = SettingsConfigDict(
        cli_prog_name="client-distiller",
        cli_kebab_case=True,
        cli_implicit_flags="toggle",
        cli_shortcuts={"verbose": "v", "as-json": "json"},  # predict --json
        cli_hide_none_type=True,
        cli_avoid_json=True,
        cli_enforce_required=True,
    )

    verbose: bool = Field(False, description="log retries and details")
    estimate: CliSubCommand[Estimate] = Field(description=_about(Estimate))
    fetch: CliSubCommand[Fetch] = Field(description=_about(Fetch))
    report: CliSubCommand[Report] = Field(description=_about(Report))
    run: CliSubCommand[Run] = Field(description=_about(Run))
    predict: CliSubCommand[Predict] = Field(description=_about(Predict))
    evaluate: CliSubCommand[Evaluate] = Field(description=_about(Evaluate))
    export: CliSubCommand[Export] = Field(description=_about(Export))


#: The subcommands, by name (the fields of ``ClientDistiller``).
COMMANDS: dict[str, type[BaseSettings]] = {
    "estimate": Estimate,
    "fetch": Fetch,
    "report": Report,
    "run": Run,
    "predict": Predict,
    "evaluate": Evaluate,
    "export": Export,
}


def _settings_source() -> CliSettingsSource[argparse.ArgumentParser]:
    return CliSettingsSource(ClientDistiller)


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser pydantic-settings derives from ``ClientDistiller``."""
    return _settings_source().root_parser


def _verbatim_fields() -> tuple[set[str], set[str]]:
    """The ``Verbatim`` options: parser destinations (``<command>.<field>``), and the flags
    that take several values."""
    dests, several = set(), set()
    for name, command in COMMANDS.items():
        for field, info in command.model_fields.items():
            marker = verbatim(info.metadata)
            if marker is None:
                continue
            dests.add(f"{name}.{field}")
            if marker.several:
                several.add("--" + field.replace("_", "-"))
    return dests, several


def _expand_several(argv: Sequence[str], flags: set[str]) -> list[str]:
    """``--flag A B`` -> ``--flag A --flag B`` for options that take several values.

    Values are the tokens after the flag up to the next one that starts with ``-``, as
    argparse reads ``nargs="+"``; ``--`` ends the options.
    """
    out: list[str] = []
    current: str | None = None  # the flag whose values are being read
    count = 0
    for i, token in enumerate(argv):
        if token == "--":
            out += argv[i:]
            break
        if token.startswith("-"):
            current, count = (token, 0) if token in flags else (None, 0)
            if current is None:
                out.append(token)
            continue
        if current is not None:
            out += [current, token]
            count += 1
            continue
        out.append(token)
    if current is not None and count == 0:
        out.append(current)  # a flag without values: let argparse report it
    return out


def _flag(error: ErrorDetails) -> str:
    """The flag (or field) an error is about, from its location past the subcommand."""
    loc = [str(part) for part in error["loc"][1:2]]
    return "--" + loc[0].replace("_", "-") if loc else ""


#: Error types that mean "this is not a value of that type": a bad command line (exit 2, as
#: argparse's ``type=`` conversions were). Anything else is a value that does not make sense.
_PARSE_ERRORS = ("_parsing", "_type", "literal_error", "missing", "extra_forbidden", "json_invalid")


def _explain(exc: ValidationError) -> tuple[int, str]:
    """The exit code and one-line message of a validation error (its first problem)."""
    error = exc.errors()[0]
    message = error["msg"].removeprefix("Value error, ")
    code = EXIT_USAGE if error["type"].endswith(_PARSE_ERRORS) else EXIT_ERROR
    given = error.get("input")
    if code == EXIT_USAGE and isinstance(given, (str, int, float)):
        message = f"{message} (got {given!r})"
    flag = _flag(error)
    return code, f"{flag}: {message}" if flag else message


def parse(argv: Sequence[str] | None = None) -> ClientDistiller:
    """Parse a command line (and the environment) into the validated settings.

    Raises:
        SystemExit: 0 after ``--help``, 2 on an unknown flag or a missing argument.
        ValidationError: a value does not validate.
    """
    source = _settings_source()
    dests, several = _verbatim_fields()
    args = _expand_several(list(sys.argv[1:] if argv is None else argv), several)
    namespace = source.root_parser.parse_args(args)
    # pydantic-settings splits list values at commas; these options take their values as
    # typed (prompts and file names may hold commas and quotes), so hand them over as JSON.
    for dest, value in vars(namespace).items():
        if dest in dests and isinstance(value, list):
            setattr(namespace, dest, json.dumps(value))
    return CliApp.run(ClientDistiller, cli_args=namespace, cli_settings_source=source)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; user errors print one ``error:`` line to stderr, never a traceback."""
    try:
        settings = parse(argv)
    except ValidationError as exc:
        code, message = _explain(exc)
        print(f"error: {message}", file=sys.stderr)
        return code
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(
        level=logging.INFO if settings.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    command: Any = get_subcommand(settings, is_required=False)
    if command is None:
        build_parser().error(f"a command is required: {', '.join(COMMANDS)}")  # exits 2
    try:
        return int(command.run())
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
