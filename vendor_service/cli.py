"""``vendor-service``: serve the API, manage keys and read usage from the data dir.

Every flag, its help text and its default come from the settings classes
(``vendor_service.settings``) through pydantic-settings' CLI: ``serve`` takes every
``VendorOptions`` field (nested groups as ``--batch.max-batch``; the earlier flat spellings such
as ``--max-batch`` stay as aliases), and every ``VENDOR_*`` env var sets the same field. The
admin token is env-only: it is no field of the command, so no flag can carry it. ``keys`` and
``usage`` open the SQLite ledger directly, so they work without a running server (and inside
the container, next to the data volume).
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

from vendor_service.metering import KeyRecord, SQLiteStore
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


def _key_json(key: KeyRecord) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "prefix": key.prefix,
        "limit": key.limit,
        "used": key.used,
        "remaining": key.remaining,
        "revoked": key.revoked,
        "created_at": key.created_at.isoformat(),
    }


def _print_key_or_fail(key: KeyRecord | None, key_id: str) -> int:
    if key is None:
        print(f"error: no key {key_id!r}", file=sys.stderr)
        return 1
    print(json.dumps(_key_json(key), indent=2))
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
        from vendor_service.inference.loading import ModelUnavailable

        settings = self.settings()
        if settings.admin_token is None or not settings.admin_token.get_secret_value():
            print(
                "error: set VENDOR_ADMIN_TOKEN (the admin API token) before serving",
                file=sys.stderr,
            )
            return 2
        try:
            settings = prepare_serve(settings)
        except ModelUnavailable as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

        settings.data_dir.mkdir(parents=True, exist_ok=True)
        instance_id = "inst_" + uuid.uuid4().hex
        settings = settings.model_copy(update={"instance_id": instance_id})
        # Before any worker serves: charges still in flight from an earlier run never reached a
        # client (the process died), so they are refunded and their idempotency keys freed.
        store = SQLiteStore(settings.db_path)
        refunded = store.recover_stale(instance_id)
        store.close()
        if refunded:
            print(
                f"refunded {refunded} charge(s) left in flight by an earlier run", file=sys.stderr
            )

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


class KeysCreate(StoreCommand):
    """Create a key; prints the clear key once (only its hash is stored)."""

    name: str = Field(description="Who the key is for.")
    budget: int = Field(ge=0, description="Queries the key may spend.")
    rps: float | None = Field(None, gt=0, description="Rate limit override (requests/s).")
    burst: int | None = Field(None, ge=1, description="Rate limit burst override.")

    def run(self) -> int:
        """Print the new key with its clear text (JSON); returns the exit code."""
        store = SQLiteStore(self.db_path)
        clear, key = store.create_key(self.name, self.budget, self.rps, self.burst)
        store.close()
        print(json.dumps({"key": clear, **_key_json(key)}, indent=2))
        print("store this key now: only its hash is kept", file=sys.stderr)
        return 0


class KeysList(StoreCommand):
    """List keys (never a clear key or a hash)."""

    def run(self) -> int:
        """Print every key (JSON); returns the exit code."""
        store = SQLiteStore(self.db_path)
        print(json.dumps([_key_json(k) for k in store.list_keys()], indent=2))
        store.close()
        return 0


class KeysTopUp(StoreCommand):
    """Add queries to a key's budget."""

    key_id: CliPositionalArg[str] = Field(description="The key's id (key_...).")
    queries: int = Field(description="Queries added to the key's limit.")

    def run(self) -> int:
        """Print the topped-up key (JSON); 1 for an unknown key."""
        store = SQLiteStore(self.db_path)
        try:
            return _print_key_or_fail(store.top_up(self.key_id, self.queries), self.key_id)
        finally:
            store.close()


class KeysRevoke(StoreCommand):
    """Revoke a key: it gets 401 from then on (its ledger is kept)."""

    key_id: CliPositionalArg[str] = Field(description="The key's id (key_...).")

    def run(self) -> int:
        """Print the revoked key (JSON); 1 for an unknown key."""
        store = SQLiteStore(self.db_path)
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

        store = SQLiteStore(self.db_path)
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


_COMMAND_NAMES = {"serve", "keys", "usage", "create", "list", "topup", "revoke"}


Command = Serve | KeysCreate | KeysList | KeysTopUp | KeysRevoke | Usage


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
    if not isinstance(command, (Serve, KeysCreate, KeysList, KeysTopUp, KeysRevoke, Usage)):
        raise SettingsError("a subcommand is required: serve, keys or usage (see --help)")
    return command


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
    return command.run()


if __name__ == "__main__":
    sys.exit(main())
