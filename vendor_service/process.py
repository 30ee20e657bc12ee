"""Run ``vendor-service serve`` as a real subprocess on 127.0.0.1: the one vendor launcher.

Used by ``make demo`` (``scripts/demo.py``), the integration and reliability tests and the
benchmarks::

    with start_vendor(tmp_path, workers=2, max_batch=8) as vendor:
        key = vendor.create_key(100)
        httpx.post(vendor.base_url + "/v1/embeddings/texts", ...)

Settings are passed as ``serve`` flags, derived from ``VendorSettings`` (:func:`settings_flags`).
The server runs in its own process group so ``stop``/``kill`` reach the uvicorn workers too.
Standard library only (no HTTP client dependency): it ships with the vendor package.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from vendor_service.settings import VendorSettings

#: Settings the launcher sets itself (or that are env-only); not knobs.
_OWN = {"host", "port", "data_dir", "workers", "admin_token", "instance_id"}


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _knob_flags() -> dict[str, str]:
    """Knob name -> ``serve`` flag, for every setting: ``max_batch`` and ``batch_max_batch``
    both name ``--batch.max-batch``; ``model`` names ``--model.name``."""
    flags: dict[str, str] = {}
    for group, field in VendorSettings.model_fields.items():
        if group in _OWN:
            continue
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            for name in kind.model_fields:
                flag = f"--{group}.{name}".replace("_", "-")
                flags[f"{group}_{name}"] = flag
                flags.setdefault(name, flag)  # a bare name is the first group's that has it
        else:
            flags[group] = "--" + group.replace("_", "-")
    flags["model"] = "--model.name"
    return flags


KNOB_FLAGS = _knob_flags()


def settings_flags(knobs: Mapping[str, Any]) -> list[str]:
    """``serve`` flags that set ``knobs`` (names from :data:`KNOB_FLAGS`).

    Raises:
        TypeError: a knob names no setting.
    """
    unknown = set(knobs) - set(KNOB_FLAGS)
    if unknown:
        raise TypeError(f"unknown vendor knobs {sorted(unknown)}; known: {sorted(KNOB_FLAGS)}")
    out: list[str] = []
    for name, value in knobs.items():
        flag = KNOB_FLAGS[name]
        if isinstance(value, bool):
            out.append(flag if value else "--no-" + flag.removeprefix("--"))
        elif isinstance(value, (list, tuple)):
            out += [flag, json.dumps([str(v) for v in value])]
        else:
            out += [flag, str(value)]
    return out


class VendorProcess:
    """A running (or stopped) vendor server; see :func:`start_vendor`."""

    def __init__(
        self,
        data_dir: Path,
        *,
        model: str | None,
        workers: int,
        port: int,
        env: dict[str, str],
        log_path: Path,
        ready_timeout: float,
        flags: list[str] | None = None,
        cwd: Path | None = None,
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
        self._flags = list(flags or [])
        self._cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self._starts = 1  # uvicorn startup lines expected in the (appended) log = workers x starts

    # -- lifecycle ---------------------------------------------------------------------------

    def command(self) -> list[str]:
        """The ``serve`` command line (later flags win over the defaults before them)."""
        model = [] if self.model is None else ["--model.name", self.model]
        return [
            sys.executable, "-m", "vendor_service.cli", "serve",
            "--host", "127.0.0.1", "--port", str(self.port), *model,
            "--data-dir", str(self.data_dir), "--workers", str(self.workers),
            "--log-level", "info", "--no-access-log", *self._flags,
        ]  # fmt: skip

    def start(self) -> VendorProcess:
        """Start the server and wait until every worker is ready."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(), cwd=self._cwd, env=self._env, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        try:
            self._wait_ready()
        except BaseException:  # Ctrl-C or a failed start: never leave an orphan server behind
            self.kill()
            raise
        return self

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.base_url + "/readyz", timeout=2) as resp:
                return bool(resp.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"vendor exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self._ready():
                if self.workers > 1:
                    self._wait_all_workers()
                return
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
        """The end of the server's log."""
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
        """``Authorization`` with the admin token."""
        return {"Authorization": f"Bearer {self.admin_token}"}

    def _call(
        self,
        path: str,
        token: str,
        body: dict[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        """One JSON call; ``urllib.error.HTTPError`` on a 4xx/5xx."""
        query = "?" + urllib.parse.urlencode(params) if params else ""
        request = urllib.request.Request(
            self.base_url + path + query,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            method="GET" if body is None else "POST",
        )
        with urllib.request.urlopen(request, timeout=30) as resp:
            return json.load(resp)

    def create_key(self, budget: int, name: str = "test", **fields: Any) -> str:
        """Create a key through the admin API; returns the clear key."""
        created = self._call(
            "/v1/admin/keys", self.admin_token, {"name": name, "budget": budget, **fields}
        )
        return str(created["key"])

    def usage(self, key: str, **params: Any) -> dict[str, Any]:
        """``GET /v1/usage`` as that key."""
        usage: dict[str, Any] = self._call("/v1/usage", key, params=params)
        return usage

    def card(self) -> dict[str, Any]:
        """The served model's card (``GET /v1/models``)."""
        with urllib.request.urlopen(self.base_url + "/v1/models", timeout=10) as resp:
            card: dict[str, Any] = json.load(resp)["data"][0]
        return card


def start_vendor(
    tmp_path: Path,
    *,
    model: str | None = "vl2v-tiny",
    workers: int = 1,
    port: int | None = None,
    extra_env: dict[str, str] | None = None,
    ready_timeout: float = 120.0,
    cwd: Path | None = None,
    **knobs: Any,
) -> VendorProcess:
    """Start a real vendor server on 127.0.0.1 and wait until every worker is ready.

    Args:
        tmp_path: the data dir is ``tmp_path / "vendor-data"``; the log ``tmp_path/vendor.log``.
        model: open_clip architecture (random weights unless ``pretrained=`` is a knob); None
            for ``serve``'s default (the demo teacher).
        workers: uvicorn worker processes.
        port: fixed port, or None for a free one.
        extra_env: more environment variables for the server.
        ready_timeout: seconds to wait for /readyz.
        cwd: working directory of the server (default: this process's).
        **knobs: settings by name (see :data:`KNOB_FLAGS`), e.g. ``max_batch=8,
            debug_delay_ms=500, config_dirs=[path], log_level="warning"``.

    Returns:
        A started ``VendorProcess`` (also a context manager that stops it).
    """
    flags = settings_flags(knobs)
    # Nothing of the caller's VENDOR_* environment leaks in: the flags say it all.
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
        flags=flags,
        cwd=cwd,
    )
    return vendor.start()
