"""``vendor-service``: serve the API, manage keys and read usage from the data dir.

Every flag, its help text and its default come from the settings classes
(``vendor_service.settings``) through pydantic-settings' CLI: ``serve`` takes every
``VendorOptions`` field (nested groups as ``--batch.max-batch``; the earlier flat spellings such
as ``--max-batch`` stay as aliases), and every ``VENDOR_*`` env var sets the same field. The
admin token is env-only: it is no field of the command, so no flag can carry it. ``keys`` and
``usage`` open the ledger directly (the data dir's SQLite file, or PostgreSQL with
``--database-url`` / ``VENDOR_DATABASE_URL``), so they work without a running server (and inside
the container, next to the data volume); they never create a ledger unless asked
(``keys create --create-ledger``, ``db upgrade``): a mistyped ``--data-dir`` fails instead of
starting an empty ledger. ``db upgrade`` applies schema migrations, ``db status`` shows them.
Errors are one line on stderr (exit 2 for what the caller can fix, 1 for a missing key).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import uuid
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    CliApp,
    CliPositionalArg,
    CliSubCommand,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    get_subcommand,
)

from shared_schemas import KeyCreateRequest, KeyCreateResponse, KeyListResponse, KeyTopUpRequest
from vendor_service.metering import KeyRecord, Store, StoreError, open_store
from vendor_service.settings import SETTINGS_ENV, StoreSettings, VendorOptions, VendorSettings

#: Flat spellings of nested settings, kept from the hand-written CLI this one replaced.
FLAG_ALIASES = {
    "model.pretrained": "pretrained",
    "batch.max-batch": "max-batch",
    "batch.max-wait-ms": "max-wait-ms",
    "limits.max-request-bytes": "max-request-bytes",
    "limits.max-items-per-request": "max-items",
    "limits.max-image-pixels": "max-image-pixels",
    "rate-limit.rps": "rate-limit-rps",
    "rate-limit.burst": "rate-limit-burst",
}


class CliError(Exception):
    """A one-line error for the operator (exit code 2)."""


def _validated(schema: type[BaseModel], flags: dict[str, str], **values: Any) -> Any:
    """``values`` checked by the admin API's own request schema (one definition of what a key
    may be), errors named by their flags."""
    try:
        return schema(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else ""
        raise CliError(f"{flags.get(field, '--' + field)}: {err['msg']}") from None


def _key_public(key: KeyRecord) -> Any:
    from vendor_service.routes.admin import key_public

    # The admin API shows a key without its own limits with the server's defaults; the CLI
    # knows no running server, so it shows the default settings' (a `serve` with other
    # --rate-limit.* flags applies those).
    return key_public(key, VendorSettings.model_construct())


def _print_json(model: BaseModel) -> None:
    print(model.model_dump_json(indent=2))


def _print_key_or_fail(key: KeyRecord | None, key_id: str) -> int:
    if key is None:
        print(f"error: no key {key_id!r}", file=sys.stderr)
        return 1
    _print_json(_key_public(key))
    return 0


def prepare_serve(settings: VendorSettings) -> VendorSettings:
    """``settings`` with the default model filled in, checked as far as possible unstarted.

    Raises:
        ModelUnavailable: no model can be served (unknown architecture, missing file, ...).
    """
    from vendor_service.inference.loading import check_model_available

    if settings.model.name is None:
        from vendor_service.demo import with_default_model  # the one edge that knows the demo

        settings = settings.model_copy(update={"model": with_default_model(settings.model)})
    check_model_available(settings.model)
    return settings


class Serve(VendorOptions):
    """Run the HTTP API with uvicorn. The admin token comes from VENDOR_ADMIN_TOKEN only."""

    def settings(self) -> VendorSettings:
        """These options plus what is never a flag (the admin token, from the environment)."""
        return VendorSettings(**self.model_dump())

    def run(self) -> int:
        """Check, recover stale charges, then serve until stopped; returns the exit code."""
        from vendor_service.inference.loading import ModelUnavailable, ensure_model_weights

        settings = self.settings()
        if settings.admin_token is None or not settings.admin_token.get_secret_value():
            print(
                "error: set VENDOR_ADMIN_TOKEN (the admin API token) before serving",
                file=sys.stderr,
            )
            return 2
        try:
            settings = prepare_serve(settings)
            # pretrained weights: from the cache, else downloaded once here (not per worker)
            ensure_model_weights(settings.model)
        except ModelUnavailable as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

        from vendor_service.metering.datadir import DataDirInUse, DataDirLock

        # The data dir is this server's alone for its whole life; only then is it safe to
        # recover, wipe the metrics dir and reset the shared rate-limit file.
        lock = DataDirLock(settings.data_dir)
        try:
            lock.acquire()
        except DataDirInUse as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        try:
            return self._serve_locked(settings)
        finally:
            lock.release()

    def _serve_locked(self, settings: VendorSettings) -> int:
        instance_id = "inst_" + uuid.uuid4().hex
        settings = settings.model_copy(update={"instance_id": instance_id})
        # The ledger exists (created here when the data dir or database is empty) and has the
        # schema this code writes; an older one is refused (`db upgrade` first).
        try:
            store = open_store(settings.data_dir, settings.database_url, create=True)
        except StoreError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        # Before any worker serves: charges still in flight whose owner is dead (an earlier run
        # on this dir, a dead replica) never reached a client, so they are refunded and their
        # idempotency keys freed. Live owners' charges (other replicas) are left alone.
        try:
            refunded = store.recover_stale(None, lease_s=settings.owners.lease_s)
        finally:
            store.close()
        if refunded:
            print(
                f"refunded {refunded} charge(s) left in flight by an earlier run", file=sys.stderr
            )
        (settings.data_dir / "ratelimit.bin").unlink(missing_ok=True)  # buckets start full

        if settings.workers > 1:
            prom_dir = settings.data_dir / "prometheus"
            shutil.rmtree(prom_dir, ignore_errors=True)
            prom_dir.mkdir(parents=True)
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(prom_dir)
        # The workers are new processes: they get the validated settings (not the flags), and
        # the admin token from the environment they inherit.
        os.environ[SETTINGS_ENV] = settings.to_env()

        import uvicorn

        uvicorn.run(
            "vendor_service.app:create_app_from_env",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_level=settings.log_level,
            access_log=settings.access_log,
            timeout_graceful_shutdown=10,
            # httptools plus header/body deadlines, a header size cap and JSON error answers
            http="vendor_service.http_protocol:VendorHttpProtocol",
            timeout_keep_alive=settings.http.idle_timeout_s,  # type: ignore[arg-type]
        )
        return 0


class _DataDirFromEnv(EnvSettingsSource):
    """The environment, for the data dir only: a command's own arguments are flags."""

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in super().__call__().items() if k in StoreSettings.model_fields}


class StoreCommand(StoreSettings):
    """A command on the ledger file; of the environment it reads ``VENDOR_DATA_DIR`` only."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, _DataDirFromEnv(settings_cls))

    def open(self, *, create: bool = False) -> Store:
        """The ledger these settings name; it must exist unless ``create``."""
        return open_store(self.data_dir, self.database_url, create=create)


class KeysCreate(StoreCommand):
    """Create a key; prints the clear key once (only its hash is stored)."""

    name: str = Field(description="Who the key is for.")
    budget: int = Field(description="Queries the key may spend (at least 0).")
    rps: float | None = Field(None, description="Rate limit override (requests/s, above 0).")
    burst: int | None = Field(None, description="Rate limit burst override (at least 1).")
    create_ledger: bool = Field(
        False, description="Create the ledger if the data dir (or database) has none."
    )

    def run(self) -> int:
        """Print the new key as ``POST /v1/admin/keys`` does (JSON); returns the exit code."""
        request: KeyCreateRequest = _validated(
            KeyCreateRequest,
            {"rate_limit_rps": "--rps", "rate_limit_burst": "--burst"},
            name=self.name,
            budget=self.budget,
            rate_limit_rps=self.rps,
            rate_limit_burst=self.burst,
        )
        store = self.open(create=self.create_ledger)
        try:
            clear, key = store.create_key(
                request.name, request.budget, request.rate_limit_rps, request.rate_limit_burst
            )
        finally:
            store.close()
        _print_json(KeyCreateResponse(key=clear, info=_key_public(key)))
        print("store this key now: only its hash is kept", file=sys.stderr)
        return 0


class KeysList(StoreCommand):
    """List keys (never a clear key or a hash), as ``GET /v1/admin/keys`` does."""

    def run(self) -> int:
        """Print every key (JSON); returns the exit code."""
        store = self.open()
        try:
            keys = store.list_keys()
        finally:
            store.close()
        _print_json(KeyListResponse(data=[_key_public(k) for k in keys]))
        return 0


class KeysTopUp(StoreCommand):
    """Add queries to a key's budget."""

    key_id: CliPositionalArg[str] = Field(description="The key's id (key_...).")
    queries: int = Field(description="Queries added to the key's limit (at least 1).")

    def run(self) -> int:
        """Print the topped-up key (JSON); 1 for an unknown key."""
        request: KeyTopUpRequest = _validated(KeyTopUpRequest, {}, queries=self.queries)
        store = self.open()
        try:
            return _print_key_or_fail(store.top_up(self.key_id, request.queries), self.key_id)
        finally:
            store.close()


class KeysRevoke(StoreCommand):
    """Revoke a key: it gets 401 from then on (its ledger is kept)."""

    key_id: CliPositionalArg[str] = Field(description="The key's id (key_...).")

    def run(self) -> int:
        """Print the revoked key (JSON); 1 for an unknown key."""
        store = self.open()
        try:
            return _print_key_or_fail(store.revoke(self.key_id), self.key_id)
        finally:
            store.close()


class Keys(BaseModel):
    """Manage API keys in the data dir's ledger."""

    create: CliSubCommand[KeysCreate] = Field(description="Create a key (prints it once).")
    list_: CliSubCommand[KeysList] = Field(alias="list", description="List keys (no clear keys).")
    topup: CliSubCommand[KeysTopUp] = Field(description="Add queries to a key's budget.")
    revoke: CliSubCommand[KeysRevoke] = Field(description="Revoke a key.")


class Usage(StoreCommand):
    """Usage and ledger of one key or of all keys (JSON)."""

    key_id: str | None = Field(None, description="One key (default: all keys).")
    limit: int = Field(20, ge=1, description="Ledger rows per key.")

    def run(self) -> int:
        """Print the usage (JSON); 1 for an unknown key."""
        from vendor_service.routes.usage import usage_response

        store = self.open()
        try:
            key_ids = [self.key_id] if self.key_id else [k.id for k in store.list_keys()]
            out = []
            for key_id in key_ids:
                summary = store.usage(key_id, limit=self.limit)
                if summary is None:
                    print(f"error: no key {key_id!r}", file=sys.stderr)
                    return 1
                out.append(usage_response(summary).model_dump(mode="json"))
        finally:
            store.close()
        print(json.dumps(out[0] if self.key_id else out, indent=2))
        return 0


class DbUpgrade(StoreCommand):
    """Create the ledger if there is none, and apply pending schema migrations."""

    def run(self) -> int:
        """Upgrade and print the schema version (JSON); returns the exit code."""
        from vendor_service.metering.migrations import SCHEMA_VERSION

        store = open_store(self.data_dir, self.database_url, create=True, upgrade=True)
        applied = list(getattr(store, "applied_migrations", []))
        where = store.description
        store.close()
        print(json.dumps({"store": where, "schema_version": SCHEMA_VERSION, "applied": applied}))
        return 0


class DbStatus(StoreCommand):
    """Schema version, live owners of in-flight charges (JSON)."""

    def run(self) -> int:
        """Print the status; 2 when the ledger is missing or of another schema version."""
        from vendor_service.metering.migrations import SCHEMA_VERSION

        store = self.open()
        try:
            owners = [
                {"id": o.id, "server": o.server, "pid": o.pid, "host": o.host, "age_s": o.age_s}
                for o in store.owners()
            ]
            where = store.description
        finally:
            store.close()
        print(
            json.dumps(
                {"store": where, "schema_version": SCHEMA_VERSION, "owners": owners}, indent=2
            )
        )
        return 0


class Db(BaseModel):
    """The ledger's schema: create, upgrade, inspect."""

    upgrade: CliSubCommand[DbUpgrade] = Field(description="Create or upgrade the schema.")
    status: CliSubCommand[DbStatus] = Field(description="Schema version and live owners.")


class VendorCli(BaseSettings):
    """A metered CLIP embedding API. Every setting is also an env var (VENDOR_*)."""

    model_config = SettingsConfigDict(
        cli_prog_name="vendor-service",
        cli_kebab_case=True,
        cli_implicit_flags=True,
        cli_shortcuts=FLAG_ALIASES,
        cli_exit_on_error=True,
        populate_by_name=True,
    )

    serve: CliSubCommand[Serve] = Field(description="Run the HTTP API (needs VENDOR_ADMIN_TOKEN).")
    keys: CliSubCommand[Keys] = Field(description="Manage API keys in the data dir's ledger.")
    usage: CliSubCommand[Usage] = Field(description="Usage of one key or all keys (JSON).")
    db: CliSubCommand[Db] = Field(description="Create, upgrade or inspect the ledger's schema.")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Only the command line picks the subcommand; each subcommand reads its own VENDOR_*.
        return (init_settings,)


_COMMAND_NAMES = {
    "serve", "keys", "usage", "db", "create", "list", "topup", "revoke", "upgrade", "status",
}  # fmt: skip


Command = Serve | KeysCreate | KeysList | KeysTopUp | KeysRevoke | Usage | DbUpgrade | DbStatus
_COMMANDS = (Serve, KeysCreate, KeysList, KeysTopUp, KeysRevoke, Usage, DbUpgrade, DbStatus)


def parse(argv: Sequence[str] | None = None) -> Command:
    """The command ``argv`` selects, validated.

    Raises:
        SystemExit: on ``--help`` or a flag argparse refuses.
        ValidationError: a value the settings refuse.
        SettingsError: no (or an incomplete) subcommand.
    """
    root = CliApp.run(VendorCli, cli_args=list(sys.argv[1:] if argv is None else argv))
    command = get_subcommand(root, is_required=False)
    if isinstance(command, Keys):
        command = get_subcommand(command, is_required=False)
        if command is None:
            raise SettingsError("`keys` needs a subcommand: create, list, topup or revoke")
    if isinstance(command, Db):
        command = get_subcommand(command, is_required=False)
        if command is None:
            raise SettingsError("`db` needs a subcommand: upgrade or status")
    if not isinstance(command, _COMMANDS):
        raise SettingsError("a subcommand is required: serve, keys, usage or db (see --help)")
    return command


def _run(command: Command) -> int:
    """Run ``command``; the store's and the file system's refusals as one-line errors."""
    try:
        return command.run()
    except (CliError, StoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):
            raise
        where = f" {exc.filename}" if exc.filename else ""
        print(f"error: cannot use{where}: {exc.strerror or exc}", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vendor-service`` console script."""
    try:
        command = parse(argv)
    except ValidationError as exc:
        for err in exc.errors():
            path = [str(p) for p in err["loc"]]
            while path and path[0] in _COMMAND_NAMES:  # the subcommand path, not a flag
                path.pop(0)
            flag = "--" + ".".join(path).replace("_", "-") if path else "arguments"
            print(f"error: {flag}: {err['msg']}", file=sys.stderr)
        return 2
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        code = _run(command)
        sys.stdout.flush()
    except BrokenPipeError:
        # `vendor-service keys list | head`: the reader left. Quietly, as cat does: point
        # stdout at /dev/null so the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
