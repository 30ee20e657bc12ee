"""The ledger's files are private (issue 13.8), and an unversioned old ledger upgrades in place."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from vendor_service.metering import SchemaMismatch, SQLiteStore
from vendor_service.metering.migrations import SCHEMA_VERSION, SQLITE


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_data_dir_is_0700_and_ledger_wal_shm_and_locks_0600(tmp_path: Path) -> None:
    old = os.umask(0o022)  # the usual umask: files would be 0644, dirs 0755
    try:
        data = tmp_path / "data"
        store = SQLiteStore(data / "ledger.sqlite3")
        _, key = store.create_key("k", 5)
        store.charge(key.id, 1, request_id="r", endpoint="texts", owner="o")
        limiter = store.rate_limiter()
        limiter.take(key.id, 1.0, 1)
        files = sorted(p.name for p in data.iterdir())
        assert {"ledger.sqlite3", "ledger.sqlite3-wal", "ledger.sqlite3-shm"} <= set(files)
        assert _mode(data) == 0o700
        for name in files:
            assert _mode(data / name) == 0o600, (name, oct(_mode(data / name)))
        limiter.close()
        store.close()
    finally:
        os.umask(old)


def test_an_existing_world_readable_ledger_is_tightened(tmp_path: Path) -> None:
    data = tmp_path / "data"
    SQLiteStore(data / "ledger.sqlite3").close()
    data.chmod(0o755)
    for p in data.iterdir():
        p.chmod(0o644)
    SQLiteStore(data / "ledger.sqlite3").close()
    assert _mode(data / "ledger.sqlite3") == 0o600
    assert all(_mode(p) == 0o600 for p in data.iterdir())


def test_serve_lock_file_is_private_and_exclusive(tmp_path: Path) -> None:
    from vendor_service.metering.datadir import DataDirInUse, DataDirLock

    with DataDirLock(tmp_path / "d") as lock:
        assert _mode(lock.path) == 0o600 and _mode(tmp_path / "d") == 0o700
        # another open file description (as another process would have): refused at once
        with pytest.raises(DataDirInUse, match=f"pid {os.getpid()}"):
            DataDirLock(tmp_path / "d").acquire()
    DataDirLock(tmp_path / "d").acquire().release()  # released with its descriptor


def test_an_unversioned_ledger_is_refused_then_upgraded_with_its_data(tmp_path: Path) -> None:
    db = tmp_path / "ledger.sqlite3"
    conn = sqlite3.connect(db)
    conn.executescript(SQLITE[0].sql)  # the ledger as the code before versions wrote it
    conn.execute(
        "INSERT INTO keys (id, name, key_hash, prefix, budget_limit, used, created_at)"
        " VALUES ('key_1', 'old', 'h', 'vk_', 10, 3, '2026-01-01T00:00:00+00:00')"
    )
    conn.commit()
    conn.close()
    with pytest.raises(SchemaMismatch, match=r"schema version 1; .* db upgrade") as exc:
        SQLiteStore(db)
    assert (exc.value.found, exc.value.needed) == (1, SCHEMA_VERSION)
    store = SQLiteStore(db, upgrade=True)
    assert store.applied_migrations == [2]
    assert store.get_key("key_1").used == 3
    store.register_owner("o")  # the new table is there
    store.close()
    again = SQLiteStore(db)  # now current: opens without upgrading
    assert again.applied_migrations == []
    again.close()
