"""The data dir: private files, and one ``serve`` at a time.

``serve`` holds an exclusive ``flock`` on ``<data dir>/serve.lock`` for its whole life (the
uvicorn workers it spawns do not inherit the descriptor; the kernel drops the lock when the
process dies, however it dies). A second ``serve`` on the same dir fails before it touches
anything: no recovery, no ledger write, no metrics dir wiped.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from pathlib import Path


class DataDirInUse(RuntimeError):
    """Another live ``serve`` holds the data dir."""


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) if needed; the dir itself 0700 (tightened if it is ours).

    Raises:
        PermissionError: the dir cannot be created or written.
    """
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.stat()
    if st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) & 0o077:
        path.chmod(0o700)
    return path


def private_file(path: Path) -> None:
    """Create ``path`` if missing, mode 0600 (an existing file of ours is tightened to 0600)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        st = os.fstat(fd)
        if st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm"):  # SQLite's journal files of an older, looser ledger
        side = path.with_name(path.name + suffix)
        with contextlib.suppress(FileNotFoundError):
            st = side.stat()
            if st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) & 0o077:
                side.chmod(0o600)


class DataDirLock:
    """The exclusive lock of one ``serve`` on its data dir (see the module docstring)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "serve.lock"
        self._fd = -1

    def acquire(self) -> DataDirLock:
        """Take the lock, or fail at once.

        Raises:
            DataDirInUse: another process holds it (the message names its pid).
            PermissionError: the data dir is not writable.
        """
        private_dir(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise DataDirInUse(
                f"the data dir {self.path.parent} is in use by another `vendor-service serve` "
                f"(pid {holder}): stop it first, or give this one another --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = -1

    def __enter__(self) -> DataDirLock:  # noqa: PYI034
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
