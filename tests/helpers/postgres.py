"""A real PostgreSQL server for the tests: initdb into a temp dir, ``pg_ctl start`` on a free port.

Debian's ``postgresql`` package provides the binaries (``/usr/lib/postgresql/<n>/bin``;
``.ci/run`` installs it). PostgreSQL refuses to run as root, so under root (CI) the cluster
belongs to the ``postgres`` system user the package creates and every command runs through
``runuser -u postgres --``. The unix socket lives in the temp dir; the server listens on
127.0.0.1 only, trusts local connections (a throwaway cluster) and is stopped at exit.

One server per test session (:func:`postgres_server`, started on first use, shared by every
module); each test gets its own database (:func:`fresh_database`)::

    from tests.helpers.postgres import postgres_url   # a fixture: import it into the module

    def test_x(postgres_url):
        store = PostgresStore(postgres_url)
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


BIN = _bin_dir()
SKIP_REASON = "PostgreSQL binaries not found (apt-get install -y postgresql; .ci/run installs them)"


@dataclass
class PostgresServer:
    root: Path
    port: int
    user: str

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        import psycopg

        with psycopg.connect(self.url(dbname), autocommit=True) as conn:
            cur = conn.execute(sql)
            return str(cur.fetchall()) if cur.description else ""

    def create_database(self) -> str:
        name = "t_" + uuid.uuid4().hex[:12]
        self.psql(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        _run_as(self.user, [str(BIN / "pg_ctl"), "-D", str(self.root / "data"), "-m",
                            "immediate", "stop"], check=False)  # fmt: skip
        shutil.rmtree(self.root, ignore_errors=True)


def _run_as(user: str, cmd: list[str], *, check: bool = True) -> subprocess.CompletedProcess:
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", user, "--", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=120)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server() -> PostgresServer:
    """initdb + pg_ctl start in a new temp dir; the caller stops it."""
    assert BIN is not None, SKIP_REASON
    user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
    root = Path(tempfile.mkdtemp(prefix="vl2v-pg-"))
    (root / "sock").mkdir()
    if os.geteuid() == 0:
        pw = pwd.getpwnam(user)
        for p in (root, root / "sock"):
            os.chown(p, pw.pw_uid, pw.pw_gid)
    _run_as(user, [str(BIN / "initdb"), "-D", str(root / "data"), "-U", user, "-A", "trust",
                   "-E", "UTF8", "--no-sync"])  # fmt: skip
    port = _free_port()
    options = (
        f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root}/sock"
        " -c max_connections=300 -c shared_buffers=64MB -c fsync=on"
    )
    result = _run_as(
        user,
        [str(BIN / "pg_ctl"), "-D", str(root / "data"), "-l", str(root / "server.log"), "-o",
         options, "-w", "-t", "60", "start"],
        check=False,
    )  # fmt: skip
    if result.returncode != 0:
        log = (root / "server.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"pg_ctl start failed: {result.stderr}\n{log}")
    server = PostgresServer(root, port, user)
    deadline = time.monotonic() + 30
    while True:
        try:
            server.psql("SELECT 1")
            return server
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


_SERVER: PostgresServer | None = None


def postgres_server_instance() -> PostgresServer:
    """The session's server, started on first use (stopped when the interpreter exits)."""
    global _SERVER
    if _SERVER is None:
        _SERVER = start_server()
        atexit.register(_SERVER.stop)
    return _SERVER


@pytest.fixture(scope="session")
def postgres_server() -> PostgresServer:
    """The session's PostgreSQL server; skipped (with the reason) without the binaries, except
    under CI, where their absence is a failure (``.ci/run`` installs them)."""
    if BIN is None:
        if os.environ.get("CI"):
            pytest.fail(SKIP_REASON)
        pytest.skip(SKIP_REASON)
    return postgres_server_instance()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A new empty database on the session's server, for one test."""
    return postgres_server.create_database()
