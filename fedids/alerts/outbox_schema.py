"""The outbox's SQLite schema, durability settings and migration of older files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id   TEXT NOT NULL UNIQUE,
    topic      TEXT NOT NULL,
    payload    BLOB NOT NULL,
    digest     TEXT NOT NULL,
    created    REAL NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    first_sent REAL
);
CREATE TABLE IF NOT EXISTS delivered (
    alert_id     TEXT NOT NULL,
    topic        TEXT NOT NULL,
    digest       TEXT NOT NULL,
    delivered_at REAL NOT NULL,
    how          TEXT NOT NULL,
    PRIMARY KEY (alert_id, topic)
);
CREATE INDEX IF NOT EXISTS delivered_at ON delivered (delivered_at);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)
"""


def connect(path: Path) -> sqlite3.Connection:
    """A connection with the outbox's durability settings and schema (migrated if old)."""
    db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(_SCHEMA)
        cols = {r[1] for r in db.execute("PRAGMA table_info(outbox)")}
        if "first_sent" not in cols:
            # an outbox written before the ledger existed: any row may have reached the
            # broker (the old code deleted rows only in batches), so all count as in doubt
            db.execute("ALTER TABLE outbox ADD COLUMN first_sent REAL")
            db.execute("UPDATE outbox SET first_sent = created")
    except BaseException:
        db.close()
        raise
    return db
