"""``vendor-service``: serve the API, manage keys and read usage from the data dir.

``keys`` and ``usage`` open the SQLite ledger directly, so they work without a running server
(and inside the container, next to the data volume).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

# flag dest -> env var read by VendorSettings (workers get settings through the environment)
_SERVE_ENV = {
    "model": "VENDOR_MODEL__NAME",
    "pretrained": "VENDOR_MODEL__PRETRAINED",
    "data_dir": "VENDOR_DATA_DIR",
    "max_batch": "VENDOR_BATCH__MAX_BATCH",
    "max_wait_ms": "VENDOR_BATCH__MAX_WAIT_MS",
    "max_request_bytes": "VENDOR_LIMITS__MAX_REQUEST_BYTES",
    "max_items": "VENDOR_LIMITS__MAX_ITEMS_PER_REQUEST",
    "max_image_pixels": "VENDOR_LIMITS__MAX_IMAGE_PIXELS",
    "rate_limit_rps": "VENDOR_RATE_LIMIT__RPS",
    "rate_limit_burst": "VENDOR_RATE_LIMIT__BURST",
    "inference_threads": "VENDOR_INFERENCE_THREADS",
}


def _data_dir(args: argparse.Namespace) -> Path:
    from vendor_service.settings import VendorSettings

    return Path(args.data_dir) if args.data_dir else VendorSettings().data_dir


def _store(args: argparse.Namespace):
    from vendor_service.metering import SQLiteStore

    return SQLiteStore(_data_dir(args) / "ledger.sqlite3")


def _key_json(key) -> dict:
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


def cmd_serve(args: argparse.Namespace) -> int:
    for dest, env in _SERVE_ENV.items():
        value = getattr(args, dest)
        if value is not None:
            os.environ[env] = str(value)

    from vendor_service.inference.loading import ModelUnavailable, check_model_available
    from vendor_service.metering import SQLiteStore
    from vendor_service.settings import VendorSettings

    settings = VendorSettings()
    if settings.admin_token is None or not settings.admin_token.get_secret_value():
        print("error: set VENDOR_ADMIN_TOKEN (the admin API token) before serving", file=sys.stderr)
        return 2
    try:
        check_model_available(settings.model)
    except ModelUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    instance_id = "inst_" + uuid.uuid4().hex
    os.environ["VENDOR_INSTANCE_ID"] = instance_id
    # Before any worker serves: charges still in flight from an earlier run never reached a
    # client (the process died), so they are refunded and their idempotency keys freed.
    store = SQLiteStore(settings.db_path)
    refunded = store.recover_stale(instance_id)
    store.close()
    if refunded:
        print(f"refunded {refunded} charge(s) left in flight by an earlier run", file=sys.stderr)

    if args.workers > 1:
        prom_dir = settings.data_dir / "prometheus"
        shutil.rmtree(prom_dir, ignore_errors=True)
        prom_dir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(prom_dir)

    import uvicorn

    uvicorn.run(
        "vendor_service.app:create_app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        access_log=not args.no_access_log,
        timeout_graceful_shutdown=10,
    )
    return 0


def cmd_keys_create(args: argparse.Namespace) -> int:
    store = _store(args)
    clear, key = store.create_key(args.name, args.budget, args.rps, args.burst)
    store.close()
    print(json.dumps({"key": clear, **_key_json(key)}, indent=2))
    print("store this key now: only its hash is kept", file=sys.stderr)
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    store = _store(args)
    print(json.dumps([_key_json(k) for k in store.list_keys()], indent=2))
    store.close()
    return 0


def _print_key_or_fail(key, key_id: str) -> int:
    if key is None:
        print(f"error: no key {key_id!r}", file=sys.stderr)
        return 1
    print(json.dumps(_key_json(key), indent=2))
    return 0


def cmd_keys_topup(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        return _print_key_or_fail(store.top_up(args.key_id, args.queries), args.key_id)
    finally:
        store.close()


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        return _print_key_or_fail(store.revoke(args.key_id), args.key_id)
    finally:
        store.close()


def cmd_usage(args: argparse.Namespace) -> int:
    from vendor_service.routes.usage import usage_response

    store = _store(args)
    try:
        key_ids = [args.key_id] if args.key_id else [k.id for k in store.list_keys()]
        out = []
        for key_id in key_ids:
            summary = store.usage(key_id, limit=args.limit)
            if summary is None:
                print(f"error: no key {key_id!r}", file=sys.stderr)
                return 1
            out.append(usage_response(summary).model_dump(mode="json"))
    finally:
        store.close()
    print(json.dumps(out[0] if args.key_id else out, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vendor-service",
        description="A metered CLIP embedding API. Settings also come from VENDOR_* env vars.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def data_dir_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir", help="holds ledger.sqlite3 (env VENDOR_DATA_DIR)")

    serve = sub.add_parser(
        "serve",
        help="run the HTTP API (needs VENDOR_ADMIN_TOKEN)",
        description="Run the API with uvicorn. The admin token comes from VENDOR_ADMIN_TOKEN.",
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--model", help="open_clip architecture (default vl2v-demo)")
    serve.add_argument("--pretrained", help="open_clip pretrained tag or checkpoint path")
    data_dir_arg(serve)
    serve.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("VENDOR_WORKERS", "1")),
        help="uvicorn worker processes (env VENDOR_WORKERS)",
    )
    serve.add_argument("--max-batch", type=int, help="most items per model call")
    serve.add_argument("--max-wait-ms", type=float, help="longest wait to fill a batch")
    serve.add_argument("--max-request-bytes", type=int, help="413 above this body size")
    serve.add_argument("--max-items", type=int, help="most images/texts per request")
    serve.add_argument("--max-image-pixels", type=int, help="width*height refused above this")
    serve.add_argument("--rate-limit-rps", type=float, help="default per-key requests/s")
    serve.add_argument("--rate-limit-burst", type=int, help="default per-key burst")
    serve.add_argument("--inference-threads", type=int, help="torch threads per worker")
    serve.add_argument("--log-level", default="info")
    serve.add_argument(
        "--no-access-log", action="store_true", help="do not log one line per request"
    )
    serve.set_defaults(func=cmd_serve)

    keys = sub.add_parser("keys", help="manage API keys in the data dir's ledger")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key; prints the clear key once")
    create.add_argument("--name", required=True)
    create.add_argument("--budget", type=int, required=True, help="queries the key may spend")
    create.add_argument("--rps", type=float, help="rate limit override (requests/s)")
    create.add_argument("--burst", type=int, help="rate limit burst override")
    data_dir_arg(create)
    create.set_defaults(func=cmd_keys_create)
    list_ = keys_sub.add_parser("list", help="list keys (no clear keys)")
    data_dir_arg(list_)
    list_.set_defaults(func=cmd_keys_list)
    topup = keys_sub.add_parser("topup", help="add queries to a key's budget")
    topup.add_argument("key_id")
    topup.add_argument("--queries", type=int, required=True)
    data_dir_arg(topup)
    topup.set_defaults(func=cmd_keys_topup)
    revoke = keys_sub.add_parser("revoke", help="revoke a key")
    revoke.add_argument("key_id")
    data_dir_arg(revoke)
    revoke.set_defaults(func=cmd_keys_revoke)

    usage = sub.add_parser("usage", help="usage and ledger of one key or all keys (JSON)")
    usage.add_argument("--key-id", help="one key (default: all keys)")
    usage.add_argument("--limit", type=int, default=20, help="ledger rows per key")
    data_dir_arg(usage)
    usage.set_defaults(func=cmd_usage)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vendor-service`` console script."""
    args = build_parser().parse_args(argv)
    if getattr(args, "budget", 0) is not None and getattr(args, "budget", 0) < 0:
        print("error: --budget must be >= 0", file=sys.stderr)
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
