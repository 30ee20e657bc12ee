"""Schema migrations: versioned SQL, one list per database, applied by ``vendor-service db upgrade``.

Why not Alembic: the stores speak SQL through the drivers directly (sqlite3, psycopg), with no
SQLAlchemy models for Alembic to diff; a numbered list of SQL scripts and a ``schema_version``
table (one row per applied version) is the whole mechanism, the same for both databases, and it
ships inside the package (no migration folder to install next to it).

Rules:

- A version's SQL never changes once released; a change is a new version appended to **both**
  lists (the two databases always share the version number of the same schema).
- ``upgrade`` applies each missing version in its own transaction together with its
  ``schema_version`` row, under a lock (PostgreSQL: an advisory lock; SQLite: the writers' lock
  file plus ``BEGIN IMMEDIATE``), so replicas upgrading at once apply each version once.
- ``serve`` creates the schema in an *empty* database, and refuses to start on an older one
  (``vendor-service db upgrade`` first: upgrading a shared database is an operator's decision)
  or on a newer one (older code must not write a schema it does not know).

Version 1 is the SQLite ledger as it was before versioning (a file with these tables and no
``schema_version`` table is taken as version 1). Version 2 adds the owners of in-flight
charges. PostgreSQL starts at version 2 (there was no PostgreSQL store before it).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    sql: str


#: The schema version this code reads and writes.
SCHEMA_VERSION = 2

SQLITE: list[Migration] = [
    Migration(
        1,
        "keys, ledger and idempotency records",
        """
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    budget_limit INTEGER NOT NULL CHECK (budget_limit >= 0),
    used INTEGER NOT NULL DEFAULT 0 CHECK (used >= 0),
    created_at TEXT NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0,
    rate_limit_rps REAL,
    rate_limit_burst INTEGER
);
CREATE TABLE IF NOT EXISTS ledger (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL UNIQUE,
    key_id TEXT NOT NULL REFERENCES keys(id),
    created_at TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    queries INTEGER NOT NULL,
    status TEXT NOT NULL,          -- charged | refunded
    state TEXT NOT NULL,           -- in_flight | done
    owner TEXT NOT NULL,           -- the owner (server process) that took the charge
    idempotency_key TEXT
);
CREATE INDEX IF NOT EXISTS ledger_key ON ledger (key_id, seq);
CREATE INDEX IF NOT EXISTS ledger_in_flight ON ledger (state, owner);
CREATE TABLE IF NOT EXISTS idempotency (
    key_id TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    body_sha256 TEXT NOT NULL,
    request_id TEXT NOT NULL,
    state TEXT NOT NULL,           -- in_flight | done
    owner TEXT NOT NULL,
    response_body BLOB,
    created_at TEXT NOT NULL,
    PRIMARY KEY (key_id, idem_key)
);
""",
    ),
    Migration(
        2,
        "owners of in-flight charges (pid, host, heartbeat)",
        """
CREATE TABLE owners (
    id TEXT PRIMARY KEY,
    server TEXT NOT NULL,          -- the `serve` start it belongs to
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,            -- hostname/boot id/pid namespace
    pid_start INTEGER,             -- the pid's start time (clock ticks since boot)
    started_at TEXT NOT NULL,
    last_seen REAL NOT NULL        -- unix time of the last heartbeat
);
""",
    ),
]

POSTGRES: list[Migration] = [
    Migration(
        2,
        "keys, ledger, idempotency records, owners of in-flight charges, shared rate limits",
        """
CREATE TABLE keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    budget_limit BIGINT NOT NULL CHECK (budget_limit >= 0),
    used BIGINT NOT NULL DEFAULT 0 CHECK (used >= 0),
    created_at TIMESTAMPTZ NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0,
    rate_limit_rps DOUBLE PRECISION,
    rate_limit_burst INTEGER
);
CREATE TABLE ledger (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id TEXT NOT NULL UNIQUE,
    key_id TEXT NOT NULL REFERENCES keys(id),
    created_at TIMESTAMPTZ NOT NULL,
    endpoint TEXT NOT NULL,
    queries INTEGER NOT NULL,
    status TEXT NOT NULL,
    state TEXT NOT NULL,
    owner TEXT NOT NULL,
    idempotency_key TEXT
);
CREATE INDEX ledger_key ON ledger (key_id, seq);
CREATE INDEX ledger_in_flight ON ledger (state, owner);
CREATE TABLE idempotency (
    key_id TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    body_sha256 TEXT NOT NULL,
    request_id TEXT NOT NULL,
    state TEXT NOT NULL,
    owner TEXT NOT NULL,
    response_body BYTEA,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (key_id, idem_key)
);
CREATE TABLE owners (
    id TEXT PRIMARY KEY,
    server TEXT NOT NULL,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    pid_start BIGINT,
    started_at TIMESTAMPTZ NOT NULL,
    last_seen DOUBLE PRECISION NOT NULL
);
-- Token buckets of the shared per-key rate limit. UNLOGGED: no WAL, nothing to fsync; after a
-- crash PostgreSQL empties it, which only refills every bucket.
CREATE UNLOGGED TABLE rate_limits (
    key_id TEXT PRIMARY KEY,
    tokens DOUBLE PRECISION NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
-- One token from `p_key`'s bucket: 0 when taken, else the seconds until one is there. The
-- database's clock, read after the row lock, so every replica sees one timeline.
CREATE FUNCTION vendor_take_token(p_key TEXT, p_rps DOUBLE PRECISION, p_burst DOUBLE PRECISION)
RETURNS DOUBLE PRECISION LANGUAGE plpgsql AS $$
DECLARE
    t DOUBLE PRECISION;
    last TIMESTAMPTZ;
    now_ts TIMESTAMPTZ;
BEGIN
    INSERT INTO rate_limits (key_id, tokens, updated_at)
        VALUES (p_key, p_burst, clock_timestamp()) ON CONFLICT (key_id) DO NOTHING;
    SELECT tokens, updated_at INTO t, last FROM rate_limits WHERE key_id = p_key FOR UPDATE;
    now_ts := clock_timestamp();
    t := least(p_burst, t + greatest(0, extract(epoch FROM now_ts - last)) * p_rps);
    IF t >= 1 THEN
        UPDATE rate_limits SET tokens = t - 1, updated_at = now_ts WHERE key_id = p_key;
        RETURN 0;
    END IF;
    UPDATE rate_limits SET tokens = t, updated_at = now_ts WHERE key_id = p_key;
    RETURN (1 - t) / p_rps;
END
$$;
""",
    ),
]

for _migrations in (SQLITE, POSTGRES):
    assert _migrations[-1].version == SCHEMA_VERSION
    assert [m.version for m in _migrations] == sorted({m.version for m in _migrations})


def pending(migrations: list[Migration], current: int) -> list[Migration]:
    """The migrations to apply to a database at version ``current`` (0: empty)."""
    if current == 0:
        return list(migrations)
    return [m for m in migrations if m.version > current]


def mismatch_message(found: int, where: str) -> str:
    """The one-line refusal for a database at schema version ``found``."""
    if found > SCHEMA_VERSION:
        return (
            f"the ledger at {where} has schema version {found}, newer than this "
            f"vendor-service knows ({SCHEMA_VERSION}): run the newer vendor-service"
        )
    return (
        f"the ledger at {where} has schema version {found}; this vendor-service needs "
        f"{SCHEMA_VERSION}: back it up, then run `vendor-service db upgrade` with the same "
        "--data-dir / --database-url"
    )
