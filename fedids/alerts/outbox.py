"""Durable local outbox: every alert is stored here before it is sent to Kafka.

Why: a site must not lose an alert because the broker is down, the network drops or the
process dies mid-send. An alert is committed to this SQLite file (WAL journal,
``synchronous=FULL``, so the commit is fsynced) *before* it is handed to the producer,
and deleted only after its delivery report succeeded. Whatever is left is sent by the
next run. Delivery is therefore at-least-once; a duplicate carries the same
deterministic alert id, so receivers recognize it.

Rows are keyed by alert id. Adding an alert whose id is already waiting replaces it only
when its content differs (a newer version); the same content is kept as it is, so
re-running detection on the same flows while the broker is away does not send twice.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from fedids.alerts.errors import AlertsInputError

DB_NAME = "outbox.sqlite3"
LOCK_NAME = "outbox.lock"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id   TEXT NOT NULL UNIQUE,
    topic      TEXT NOT NULL,
    payload    BLOB NOT NULL,
    digest     TEXT NOT NULL,
    created    REAL NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)
"""


@dataclass(frozen=True)
class NewAlert:
    """An alert to store: ``digest`` fingerprints its content (not its timestamps)."""

    alert_id: str
    topic: str
    payload: bytes
    digest: str


@dataclass(frozen=True)
class PendingAlert:
    """A stored alert; ``seq`` identifies this version of it (a replacement gets a new one)."""

    seq: int
    alert_id: str
    topic: str
    payload: bytes
    attempts: int


def default_outbox_dir() -> Path:
    """``$FEDIDS_OUTBOX``, else ``~/.fedids/outbox``.

    Deliberately not next to the model: a retrained model lives in a new run directory, and
    alerts waiting in the old one would never be sent.
    """
    env = os.environ.get("FEDIDS_OUTBOX")
    return Path(env).expanduser() if env else Path.home() / ".fedids" / "outbox"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Outbox:
    """The SQLite-backed outbox in ``directory`` (created with mode 0700 if missing)."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory).expanduser()
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.path = self.directory / DB_NAME
            fresh = not self.path.exists()
            self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            if fresh:
                _fsync_dir(self.directory)  # the new file's directory entry must survive too
        except (OSError, sqlite3.Error) as exc:
            raise AlertsInputError(f"cannot open the outbox in {self.directory}: {exc}") from exc
        self._lock_fd: int | None = None

    # -- writing -------------------------------------------------------------------------

    def add(self, alerts: Iterable[NewAlert], meta: Mapping[str, str] | None = None) -> int:
        """Store alerts durably (one fsynced transaction); returns how many rows changed.

        ``meta`` key/values are saved in the same transaction (the streaming detector keeps
        its progress there, so progress and alerts are never out of step after a crash).
        """
        changed = 0
        now = time.time()
        with self._transaction():
            for key, value in (meta or {}).items():
                self._db.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value)
                )
            for a in alerts:
                row = self._db.execute(
                    "SELECT digest, topic FROM outbox WHERE alert_id = ?", (a.alert_id,)
                ).fetchone()
                if row is not None and row[0] == a.digest and row[1] == a.topic:
                    continue  # same alert already waiting: keep it, do not send it twice
                self._db.execute(
                    "INSERT OR REPLACE INTO outbox (alert_id, topic, payload, digest, created)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (a.alert_id, a.topic, a.payload, a.digest, now),
                )
                changed += 1
        return changed

    def remove(self, seqs: Sequence[int]) -> None:
        """Forget delivered versions (by ``seq``, so a newer replacement is kept)."""
        if not seqs:
            return
        with self._transaction():
            self._db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])

    def record_failures(self, failures: Sequence[tuple[int, str]]) -> None:
        """Count a failed attempt and keep its reason (shown by ``pending`` for diagnosis)."""
        if not failures:
            return
        with self._transaction():
            self._db.executemany(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE seq = ?",
                [(err[:500], seq) for seq, err in failures],
            )

    # -- reading -------------------------------------------------------------------------

    def pending(self, limit: int | None = None) -> list[PendingAlert]:
        """Waiting alerts, oldest first."""
        sql = "SELECT seq, alert_id, topic, payload, attempts FROM outbox ORDER BY seq"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [PendingAlert(*row) for row in self._db.execute(sql)]

    def iter_pending(self, after_seq: int = 0, chunk: int = 1000) -> Iterator[PendingAlert]:
        """Waiting alerts in ``seq`` order, read in chunks (bounded memory)."""
        last = after_seq
        while True:
            rows = self._db.execute(
                "SELECT seq, alert_id, topic, payload, attempts FROM outbox"
                " WHERE seq > ? ORDER BY seq LIMIT ?",
                (last, chunk),
            ).fetchall()
            if not rows:
                return
            for row in rows:
                yield PendingAlert(*row)
            last = rows[-1][0]

    def pending_for(self, alert_ids: Iterable[str]) -> list[PendingAlert]:
        """The waiting versions of these alerts, oldest first."""
        out = []
        for alert_id in alert_ids:
            row = self._db.execute(
                "SELECT seq, alert_id, topic, payload, attempts FROM outbox WHERE alert_id = ?",
                (alert_id,),
            ).fetchone()
            if row is not None:
                out.append(PendingAlert(*row))
        return sorted(out, key=lambda p: p.seq)

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def ids(self) -> set[str]:
        return {r[0] for r in self._db.execute("SELECT alert_id FROM outbox")}

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    # -- draining lock -------------------------------------------------------------------

    def try_lock(self) -> bool:
        """Claim the right to send the alerts of earlier runs (one process at a time).

        A second concurrent ``fedids detect`` on the same outbox sends only its own alerts,
        so two processes do not deliver the same backlog twice.
        """
        if self._lock_fd is not None:
            return True
        fd = os.open(self.directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    # -- plumbing ------------------------------------------------------------------------

    def _transaction(self) -> _Tx:
        return _Tx(self._db)

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None
        self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _Tx:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (rolled back on error); the commit is fsynced."""

    def __init__(self, db: sqlite3.Connection):
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
