"""Run ``vendor-service serve`` as a real subprocess on 127.0.0.1 for integration tests.

    with start_vendor(tmp_path, workers=2, max_batch=8) as vendor:
        key = vendor.create_key(100)
        httpx.post(vendor.base_url + "/v1/embeddings/texts", ...)

The server runs in its own process group so ``stop``/``kill`` reach the uvicorn workers too.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

#: knob name -> VENDOR_* env var of ``serve``
KNOB_ENV = {
    "pretrained": "VENDOR_MODEL__PRETRAINED",
    "max_batch": "VENDOR_BATCH__MAX_BATCH",
    "max_wait_ms": "VENDOR_BATCH__MAX_WAIT_MS",
    "debug_delay_ms": "VENDOR_BATCH__DEBUG_DELAY_MS",
    "max_request_bytes": "VENDOR_LIMITS__MAX_REQUEST_BYTES",
    "max_items_per_request": "VENDOR_LIMITS__MAX_ITEMS_PER_REQUEST",
    "max_text_chars": "VENDOR_LIMITS__MAX_TEXT_CHARS",
    "max_image_pixels": "VENDOR_LIMITS__MAX_IMAGE_PIXELS",
    "rate_limit_rps": "VENDOR_RATE_LIMIT__RPS",
    "rate_limit_burst": "VENDOR_RATE_LIMIT__BURST",
    "price_per_image_query": "VENDOR_MODEL__PRICE_PER_IMAGE_QUERY",
    "price_per_text_query": "VENDOR_MODEL__PRICE_PER_TEXT_QUERY",
    "inference_threads": "VENDOR_INFERENCE_THREADS",
}

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class VendorProcess:
    """A running (or stopped) vendor server; see ``start_vendor``."""

    def __init__(
        self,
        data_dir: Path,
        *,
        model: str,
        workers: int,
        port: int,
        env: dict[str, str],
        log_path: Path,
        ready_timeout: float,
    ) -> None:
        self.data_dir = data_dir
        self.model = model
        self.workers = workers
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.admin_token = env["VENDOR_ADMIN_TOKEN"]
        self.log_path = log_path
        self.ready_timeout = ready_timeout
        self._env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self._starts = 1  # uvicorn startup lines expected in the (appended) log = workers x starts

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> VendorProcess:
        cmd = [
            sys.executable, "-m", "vendor_service.cli", "serve",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--model", self.model, "--data-dir", str(self.data_dir),
            "--workers", str(self.workers), "--log-level", "info", "--no-access-log",
        ]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                cmd, cwd=REPO_ROOT, env=self._env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"vendor exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(self.base_url + "/readyz", timeout=2).status_code == 200:
                    if self.workers > 1:
                        self._wait_all_workers()
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.kill()
        raise TimeoutError(f"vendor not ready after {self.ready_timeout}s:\n{self.log_tail()}")

    def _wait_all_workers(self) -> None:
        # /readyz answers as soon as one worker is up; the others share the socket and would
        # make early requests wait. uvicorn logs one startup line per ready worker.
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            started = self.log_path.read_text(errors="replace").count(
                "Application startup complete"
            )
            if started >= self.workers * self._starts:
                return
            time.sleep(0.2)
        raise TimeoutError(f"not all {self.workers} workers started:\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def _signal_group(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM (graceful) and wait; SIGKILL if it does not exit in time."""
        if self.proc is None:
            return None
        self._signal_group(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self.proc.wait(10)
        self._reap_group()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL the server and its workers at once (a crash, no cleanup)."""
        if self.proc is None:
            return
        self._signal_group(signal.SIGKILL)
        self.proc.wait(10)
        self._reap_group()

    def _reap_group(self) -> None:
        # Workers may outlive a SIGTERM'd parent for a moment; make sure the group is gone.
        assert self.proc is not None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def restart(self) -> VendorProcess:
        """Stop (if running) and start again on the same port and data dir."""
        if self.proc is not None and self.proc.poll() is None:
            self.stop()
        self._starts += 1
        return self.start()

    def __enter__(self) -> VendorProcess:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- API shortcuts -----------------------------------------------------------------------

    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    def create_key(self, budget: int, name: str = "test", **fields: Any) -> str:
        """Create a key through the admin API; returns the clear key."""
        resp = httpx.post(
            self.base_url + "/v1/admin/keys",
            json={"name": name, "budget": budget, **fields},
            headers=self.admin_headers(),
            timeout=30,
        )
        resp.raise_for_status()
        return resp.json()["key"]

    def usage(self, key: str, **params: Any) -> dict[str, Any]:
        """``GET /v1/usage`` as that key."""
        resp = httpx.get(
            self.base_url + "/v1/usage",
            params=params,
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        resp.raise_for_status()
        return resp.json()


def start_vendor(
    tmp_path: Path,
    *,
    model: str = "vl2v-tiny",
    workers: int = 1,
    port: int | None = None,
    extra_env: dict[str, str] | None = None,
    ready_timeout: float = 120.0,
    **knobs: Any,
) -> VendorProcess:
    """Start a real vendor server on 127.0.0.1 and wait until every worker is ready.

    Args:
        tmp_path: the data dir is ``tmp_path / "vendor-data"``; the log ``tmp_path/vendor.log``.
        model: open_clip architecture (random weights unless ``pretrained=`` is a knob).
        workers: uvicorn worker processes.
        port: fixed port, or None for a free one.
        extra_env: more environment variables for the server.
        ready_timeout: seconds to wait for /readyz.
        **knobs: settings by name (see ``KNOB_ENV``), e.g. ``max_batch=8, debug_delay_ms=500``.

    Returns:
        A started ``VendorProcess`` (also a context manager that stops it).
    """
    unknown = set(knobs) - set(KNOB_ENV)
    if unknown:
        raise TypeError(f"unknown vendor knobs {sorted(unknown)}; known: {sorted(KNOB_ENV)}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VENDOR_")}
    env.update(
        {
            "VENDOR_ADMIN_TOKEN": "adm_" + secrets.token_urlsafe(16),
            "VENDOR_INFERENCE_THREADS": "1",
            "OMP_NUM_THREADS": "1",
            "HF_HUB_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update({KNOB_ENV[k]: str(v) for k, v in knobs.items()})
    env.update(extra_env or {})
    data_dir = Path(tmp_path) / "vendor-data"
    vendor = VendorProcess(
        data_dir,
        model=model,
        workers=workers,
        port=port or free_port(),
        env=env,
        log_path=Path(tmp_path) / "vendor.log",
        ready_timeout=ready_timeout,
    )
    return vendor.start()
