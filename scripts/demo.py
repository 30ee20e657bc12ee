"""`make demo`: the whole product on the embedded demo world, end to end, in one command.

1. start ``vendor-service serve`` (the demo teacher, its default model) as a real process on a
   free 127.0.0.1 port, with its ledger under ``runs/demo/vendor-data``;
2. create an API key with a budget (``vendor-service keys create``) or reuse the one saved in
   ``runs/demo/api_key`` by an earlier demo;
3. ``client-distiller run`` against it: the demo benchmark with one held-out style, erm, kd,
   adip and the teacher's zero-shot line; teacher answers cached under ``runs/demo/cache``;
4. print the ID/OOD table and the query spend (client ledger and the vendor's own count),
   write the plots under ``runs/demo/``, and stop the vendor (also on error or Ctrl-C).

A second ``make demo`` reuses the key, the cache and the trained checkpoints: it spends zero
new queries and skips training.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def vendor_cli(*args: str, data_dir: Path) -> str:
    """Run ``vendor-service ARGS --data-dir DATA_DIR`` and return its stdout."""
    out = subprocess.run(
        [str(BIN / "vendor-service"), *args, "--data-dir", str(data_dir)],
        check=True,
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    return out.stdout


def ensure_key(data_dir: Path, key_file: Path, budget: int) -> str:
    """The saved demo key if the vendor's ledger still knows it, else a new one (saved 0600)."""
    if key_file.is_file():
        key = key_file.read_text().strip()
        keys = json.loads(vendor_cli("keys", "list", data_dir=data_dir))
        if any(
            key.startswith(k["prefix"]) and not k["revoked"] and k["remaining"] > 0 for k in keys
        ):
            print(f"reusing the demo API key saved in {key_file}")
            return key
    created = json.loads(
        vendor_cli("keys", "create", "--name", "demo", "--budget", str(budget), data_dir=data_dir)
    )
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.touch(mode=0o600)
    key_file.write_text(created["key"])
    print(
        f"created API key {created['prefix']}... with a budget of {budget:,} queries "
        f"(saved in {key_file})"
    )
    return created["key"]


class Vendor:
    """``vendor-service serve`` as a child process in its own process group."""

    def __init__(self, data_dir: Path, log_path: Path, port: int) -> None:
        self.base_url = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "VENDOR_ADMIN_TOKEN": "adm_" + secrets.token_urlsafe(16),
            "HF_HUB_OFFLINE": "1",
            "OMP_NUM_THREADS": "1",
        }
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    str(BIN / "vendor-service"),
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--data-dir",
                    str(data_dir),
                    "--workers",
                    "1",
                    "--inference-threads",
                    "1",
                    "--log-level",
                    "warning",
                ],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"the vendor exited ({self.proc.returncode}); see {self.log_path}"
                )
            try:
                if httpx.get(self.base_url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"the vendor was not ready after {timeout:.0f}s; see {self.log_path}")

    def card(self) -> dict:
        return httpx.get(self.base_url + "/v1/models", timeout=10).json()["data"][0]

    def usage(self, key: str) -> dict:
        resp = httpx.get(
            self.base_url + "/v1/usage", headers={"Authorization": f"Bearer {key}"}, timeout=10
        )
        resp.raise_for_status()
        return resp.json()

    def stop(self) -> None:
        """SIGTERM the group, SIGKILL if it lingers."""
        if self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        except ProcessLookupError:
            pass


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO / "runs" / "demo",
        help="demo folder: vendor data, key, cache, results (default runs/demo)",
    )
    parser.add_argument("--target-domain", default="sketch", help="held-out style (sketch)")
    parser.add_argument("--views", default="4", help="teacher views per training image (4)")
    parser.add_argument("--steps", type=int, default=200, help="steps per stage (200)")
    parser.add_argument(
        "--batch-size", type=int, default=16, help="images per source domain per step (16)"
    )
    parser.add_argument(
        "--budget", type=int, default=20_000, help="query budget of a new demo key (20,000)"
    )
    parser.add_argument("--seeds", default="0", help="comma list of seeds (0)")
    parser.add_argument(
        "run_args",
        nargs="*",
        metavar="-- RUN_ARGS",
        help="more options for `client-distiller run` (after --)",
    )
    args = parser.parse_args(argv)

    out: Path = args.out.resolve()
    data_dir, cache, key_file = out / "vendor-data", out / "cache", out / "api_key"
    data_dir.mkdir(parents=True, exist_ok=True)
    key = ensure_key(data_dir, key_file, args.budget)

    vendor = Vendor(data_dir, out / "vendor.log", free_port())
    try:
        print(f"starting the vendor on {vendor.base_url} (log: {vendor.log_path}) ...", flush=True)
        vendor.wait_ready()
        card = vendor.card()
        print(
            f"vendor ready: model {card['id']} ({card['fingerprint'][:12]}), "
            f"{card['embed_dim']}-d, {card['image_size']} px",
            flush=True,
        )
        used_before = vendor.usage(key)["budget"]["used"]

        from client_distiller.cli import main as client

        argv_run = [
            "run",
            "--data",
            "demo",
            "--target-domain",
            args.target_domain,
            "--endpoint",
            vendor.base_url,
            "--api-key",
            key,
            "--cache-dir",
            str(cache),
            "--out",
            str(out),
            "--algorithms",
            "erm,kd,adip,zeroshot",
            "--views",
            args.views,
            "--seeds",
            args.seeds,
            "--steps",
            str(args.steps),
            "--align-steps",
            str(args.steps),
            "--batch-size",
            str(args.batch_size),
            "--threads",
            "1",
            *args.run_args,
        ]
        print(
            "$ client-distiller " + " ".join(a if a != key else "<key>" for a in argv_run),
            flush=True,
        )
        t0 = time.perf_counter()
        code = client(argv_run)
        if code != 0:
            print(f"client-distiller run failed with exit code {code}", file=sys.stderr)
            return code
        budget = vendor.usage(key)["budget"]
        print(
            f"\nvendor's own count for the demo key: {budget['used'] - used_before:,} queries "
            f"charged by this demo; {budget['used']:,} used of {budget['limit']:,} in total, "
            f"{budget['remaining']:,} remaining"
        )
        print(
            f"demo finished in {time.perf_counter() - t0:.0f} s; plots: "
            f"{out / 'accuracy_per_domain.png'}, {out / 'accuracy_vs_queries.png'}"
        )
        return 0
    except KeyboardInterrupt:
        print(
            "\ninterrupted; the vendor is being stopped (paid answers stay cached)", file=sys.stderr
        )
        return 130
    finally:
        vendor.stop()


if __name__ == "__main__":
    sys.exit(main())
