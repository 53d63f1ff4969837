"""Durable local outbox: every alert is stored here before it is sent to Kafka.

Why: a site must not lose an alert because the broker is down, the network drops or the
process dies mid-send. An alert is committed to this SQLite file (WAL journal,
``synchronous=FULL``, so the commit is fsynced) *before* it is handed to the producer.

Exactly once per alert version, three tables:

``outbox``     alerts waiting to be sent. ``first_sent`` is set (durably, in one
               transaction per batch) *before* an alert is handed to a producer: a row with
               ``first_sent`` but no confirmed delivery is **in doubt** (the broker may have
               stored it: crash after the ack, purge of an in-flight message, timeout).
``delivered``  the ledger: (alert id, topic) -> digest of the version the broker
               acknowledged. An alert whose version is already in the ledger is never
               queued again, so a re-run over the same flows sends nothing twice.
``meta``       small key/values (the streaming detector's progress and open bursts), saved
               in the same transaction as the alerts they belong to.

In-doubt alerts are checked against the topic before they are produced again
(:mod:`fedids.alerts.indoubt`). A corrupt file is moved aside and salvaged
(:mod:`fedids.alerts.outbox_repair`).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from fedids.alerts.errors import AlertsInputError

if TYPE_CHECKING:
    from fedids.alerts.outbox_repair import SalvageReport

DB_NAME = "outbox.sqlite3"
LOCK_NAME = "outbox.lock"
#: ledger entries older than this are forgotten (bounds the file; documented in alerts.md)
LEDGER_DAYS = 30.0

_COLS = "seq, alert_id, topic, payload, attempts, digest, first_sent"


@dataclass(frozen=True)
class NewAlert:
    """An alert to store: ``digest`` fingerprints its content (not its timestamps)."""

    alert_id: str
    topic: str
    payload: bytes
    digest: str


@dataclass(frozen=True)
class PendingAlert:
    """A stored alert; ``seq`` identifies this version of it (a replacement gets a new one).

    ``first_sent``: when it was first handed to a producer (None: never; set: in doubt
    until its delivery is confirmed).
    """

    seq: int
    alert_id: str
    topic: str
    payload: bytes
    attempts: int
    digest: str = ""
    first_sent: float | None = None


@dataclass(frozen=True)
class InDoubtKey:
    """What the in-doubt check needs of a stored version (not its payload)."""

    seq: int
    alert_id: str
    topic: str
    sha256: str  # of the payload: the exact bytes a message must carry to be this version
    first_sent: float


@dataclass
class AddResult:
    """How :meth:`Outbox.add` classified each alert (by id)."""

    new: list[str] = field(default_factory=list)  # stored now (new, or a changed version)
    waiting: list[str] = field(default_factory=list)  # this version was already waiting
    delivered: list[str] = field(default_factory=list)  # this version was already delivered

    @property
    def changed(self) -> int:
        return len(self.new)


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
    """The SQLite-backed outbox in ``directory`` (created with mode 0700 if missing).

    ``repair`` (default): a corrupt file is moved aside, salvaged into a fresh one, and
    the outcome kept in :attr:`repair_report` (its :meth:`message` is one line for users).
    """

    def __init__(self, directory: str | Path, *, repair: bool = True):
        from fedids.alerts.outbox_repair import CorruptOutbox, open_checked

        self.directory = Path(directory).expanduser()
        self._lock_fd: int | None = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.path = self.directory / DB_NAME
            fresh = not self.path.exists()
            self._db, self.repair_report = open_checked(self.path, repair=repair)
            if fresh:
                _fsync_dir(self.directory)  # the new file's directory entry must survive too
            self._prune()
        except CorruptOutbox as exc:
            raise AlertsInputError(str(exc)) from exc
        except (OSError, sqlite3.Error) as exc:
            raise AlertsInputError(f"cannot open the outbox in {self.directory}: {exc}") from exc

    # -- writing -------------------------------------------------------------------------

    def add(
        self,
        alerts: Iterable[NewAlert],
        meta: Mapping[str, str | None] | None = None,
    ) -> AddResult:
        """Store alerts durably (one fsynced transaction) unless already waiting/delivered.

        Same version (digest and topic) already waiting: kept as it is (not queued twice).
        Same version already in the delivered ledger: skipped. A changed version replaces
        a waiting one (a newer version of the alert). ``meta`` key/values are saved in the
        same transaction (value None deletes the key).
        """
        result = AddResult()
        now = time.time()
        with self._transaction():
            for key, value in (meta or {}).items():
                if value is None:
                    self._db.execute("DELETE FROM meta WHERE key = ?", (key,))
                else:
                    self._db.execute(
                        "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value)
                    )
            for a in alerts:
                row = self._db.execute(
                    "SELECT digest, topic FROM outbox WHERE alert_id = ?", (a.alert_id,)
                ).fetchone()
                if row is not None and row[0] == a.digest and row[1] == a.topic:
                    result.waiting.append(a.alert_id)
                    continue
                done = self._db.execute(
                    "SELECT digest FROM delivered WHERE alert_id = ? AND topic = ?",
                    (a.alert_id, a.topic),
                ).fetchone()
                if done is not None and done[0] == a.digest:
                    result.delivered.append(a.alert_id)
                    continue
                self._db.execute(
                    "INSERT OR REPLACE INTO outbox (alert_id, topic, payload, digest, created)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (a.alert_id, a.topic, a.payload, a.digest, now),
                )
                result.new.append(a.alert_id)
        return result

    def mark_sent(self, seqs: Sequence[int], when: float | None = None) -> None:
        """Record (fsynced) that these versions are about to be handed to a producer.

        Called *before* producing: if the process dies after the broker stored them but
        before :meth:`mark_delivered`, the next run knows they are in doubt.
        """
        if not seqs:
            return
        when = time.time() if when is None else when
        with self._transaction():
            self._db.executemany(
                "UPDATE outbox SET first_sent = COALESCE(first_sent, ?) WHERE seq = ?",
                [(when, s) for s in seqs],
            )

    def unmark_sent(self, seqs: Sequence[int]) -> None:
        """Undo :meth:`mark_sent` for versions that were never handed over after all."""
        if not seqs:
            return
        with self._transaction():
            self._db.executemany(
                "UPDATE outbox SET first_sent = NULL WHERE seq = ?", [(s,) for s in seqs]
            )

    def mark_delivered(self, seqs: Sequence[int], how: str = "ack") -> None:
        """Move delivered versions (by ``seq``, so a newer replacement stays) to the ledger.

        ``how``: ``ack`` (delivery report) or ``found`` (seen on the topic by the in-doubt
        check).
        """
        if not seqs:
            return
        now = time.time()
        with self._transaction():
            for s in seqs:
                self._db.execute(
                    "INSERT OR REPLACE INTO delivered (alert_id, topic, digest, delivered_at, how)"
                    " SELECT alert_id, topic, digest, ?, ? FROM outbox WHERE seq = ?",
                    (now, how, s),
                )
                self._db.execute("DELETE FROM outbox WHERE seq = ?", (s,))

    def record_failures(self, failures: Sequence[tuple[int, str]]) -> None:
        """Count a failed attempt and keep its reason (shown by ``pending`` for diagnosis)."""
        if not failures:
            return
        with self._transaction():
            self._db.executemany(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE seq = ?",
                [(err[:500], seq) for seq, err in failures],
            )

    def salvage_from(self, source: str | Path) -> SalvageReport:
        """Copy the readable rows of another (damaged) outbox file into this one."""
        from fedids.alerts.outbox_repair import salvage_into

        return salvage_into(Path(source), self._db)

    def _prune(self) -> None:
        cutoff = time.time() - LEDGER_DAYS * 86400
        with self._transaction():
            self._db.execute("DELETE FROM delivered WHERE delivered_at < ?", (cutoff,))

    # -- reading -------------------------------------------------------------------------

    def pending(self, limit: int | None = None) -> list[PendingAlert]:
        """Waiting alerts, oldest first."""
        sql = f"SELECT {_COLS} FROM outbox ORDER BY seq"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [PendingAlert(*row) for row in self._db.execute(sql)]

    def iter_pending(self, after_seq: int = 0, chunk: int = 1000) -> Iterator[PendingAlert]:
        """Waiting alerts in ``seq`` order, read in chunks (bounded memory)."""
        last = after_seq
        while True:
            rows = self._db.execute(
                f"SELECT {_COLS} FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?", (last, chunk)
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
                f"SELECT {_COLS} FROM outbox WHERE alert_id = ?", (alert_id,)
            ).fetchone()
            if row is not None:
                out.append(PendingAlert(*row))
        return sorted(out, key=lambda p: p.seq)

    def in_doubt(self) -> list[PendingAlert]:
        """Waiting versions that were handed to a producer before (maybe on the topic)."""
        sql = f"SELECT {_COLS} FROM outbox WHERE first_sent IS NOT NULL ORDER BY seq"
        return [PendingAlert(*row) for row in self._db.execute(sql)]

    def in_doubt_keys(self, chunk: int = 1000) -> Iterator[InDoubtKey]:
        """In-doubt versions as (seq, id, topic, SHA-256 of the payload, first_sent),
        read in chunks so that a large backlog never sits in memory at once."""
        last = 0
        while True:
            rows = self._db.execute(
                "SELECT seq, alert_id, topic, payload, first_sent FROM outbox"
                " WHERE first_sent IS NOT NULL AND seq > ? ORDER BY seq LIMIT ?",
                (last, chunk),
            ).fetchall()
            if not rows:
                return
            for seq, alert_id, topic, payload, first_sent in rows:
                yield InDoubtKey(
                    seq, alert_id, topic, hashlib.sha256(payload).hexdigest(), first_sent
                )
            last = rows[-1][0]

    def delivered_digest(self, alert_id: str, topic: str) -> str | None:
        row = self._db.execute(
            "SELECT digest FROM delivered WHERE alert_id = ? AND topic = ?", (alert_id, topic)
        ).fetchone()
        return None if row is None else str(row[0])

    def delivered_count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM delivered").fetchone()[0])

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def meta_items(self, prefix: str) -> dict[str, str]:
        """Meta entries whose key starts with ``prefix``."""
        rows = self._db.execute(
            "SELECT key, value FROM meta WHERE substr(key, 1, ?) = ?", (len(prefix), prefix)
        )
        return {str(k): str(v) for k, v in rows}

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
