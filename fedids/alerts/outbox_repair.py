"""A corrupt outbox never stops detection: check, move aside, salvage readable rows.

Why: the outbox is a single SQLite file on a device that may lose power, fill its disk or
be copied half-way. Detection and ``--out`` must go on regardless, and what can still be
read (waiting alerts, the delivered ledger that prevents duplicates) must not be thrown
away.

On open, ``PRAGMA quick_check`` reads every page (milliseconds for a usual outbox; the
ledger is pruned after ``LEDGER_DAYS``). If the file is not a database or a page is
damaged, it is renamed ``outbox.sqlite3.corrupt-<UTC time>`` (its WAL along with it), a
fresh outbox is created, and the readable rows are copied into it. Reading skips damaged
b-tree pages: a scan in rowid order jumps ahead past a failing region, then probes the
skipped rowids one by one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

#: most single-row probes spent on rows skipped around a damaged region
MAX_PROBES = 50_000
_CORRUPT_CODES = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}


class CorruptOutbox(Exception):
    """The outbox file is damaged (raised only when repair is off)."""


@dataclass(frozen=True)
class SalvageReport:
    """What could be copied out of a damaged outbox file."""

    source: Path
    pending: int = 0  # waiting alerts copied
    ledger: int = 0  # delivered-ledger entries copied
    damaged_reads: int = 0  # reads that failed (0: everything readable was read)
    error: str | None = None  # why nothing at all could be read

    def line(self) -> str:
        if self.error:
            return f"nothing could be salvaged from {self.source} ({self.error})"
        text = (
            f"salvaged {self.pending} waiting alert(s) and {self.ledger} delivered-ledger "
            f"entr{'y' if self.ledger == 1 else 'ies'} from {self.source}"
        )
        if self.damaged_reads:
            text += f" ({self.damaged_reads} damaged region(s) skipped)"
        return text


@dataclass(frozen=True)
class RepairReport:
    """A corrupt outbox that was moved aside and replaced by a fresh one."""

    path: Path
    reason: str
    moved_to: Path
    salvage: SalvageReport

    def message(self) -> str:
        """One line for the user: what happened, where the old file went, what was kept."""
        return (
            f"outbox {self.path} was corrupt ({self.reason}): moved aside to {self.moved_to}; "
            f"a fresh outbox was started; {self.salvage.line()}"
        )


def is_corruption(exc: BaseException) -> bool:
    """A damaged file (not a lock, a full disk or a permission problem)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code in _CORRUPT_CODES
    text = str(exc).lower()
    return "malformed" in text or "not a database" in text


def integrity_problem(db: sqlite3.Connection) -> str | None:
    """None when ``PRAGMA quick_check`` passes, else its first complaint."""
    rows = [str(r[0]) for r in db.execute("PRAGMA quick_check")]
    return None if rows == ["ok"] else (rows[0] if rows else "quick_check returned nothing")


def check_file(path: Path) -> str | None:
    """Why the outbox file at ``path`` is corrupt, or None if it reads cleanly."""
    from fedids.alerts.outbox_schema import connect

    try:
        db = connect(path)
    except sqlite3.DatabaseError as exc:
        if is_corruption(exc):
            return str(exc)
        raise
    try:
        return integrity_problem(db)
    except sqlite3.DatabaseError as exc:
        if is_corruption(exc):
            return str(exc)
        raise
    finally:
        db.close()


def open_checked(
    path: Path, *, repair: bool = True
) -> tuple[sqlite3.Connection, RepairReport | None]:
    """Open (creating if needed) the outbox at ``path``; repair it if it is corrupt."""
    from fedids.alerts.outbox_schema import connect

    problem = check_file(path) if path.exists() else None
    if problem is None:
        return connect(path), None
    if not repair:
        raise CorruptOutbox(f"outbox {path} is corrupt ({problem})")
    moved = quarantine(path)
    db = connect(path)
    try:
        salvage = salvage_into(moved, db)
    except BaseException:
        db.close()
        raise
    return db, RepairReport(path=path, reason=problem, moved_to=moved, salvage=salvage)


def quarantine(path: Path) -> Path:
    """Rename a damaged outbox (and its WAL) aside; returns the new name."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    path.rename(target)
    wal = path.with_name(path.name + "-wal")
    if wal.exists():
        wal.rename(target.with_name(target.name + "-wal"))  # sqlite reads it with the file
    path.with_name(path.name + "-shm").unlink(missing_ok=True)
    return target


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    try:
        return {str(r[1]) for r in db.execute(f"PRAGMA table_info({table})")}
    except sqlite3.DatabaseError:
        return set()


def read_rows(db: sqlite3.Connection, table: str, cols: str) -> tuple[list[tuple], int]:
    """Every readable row of ``table`` (rowid order) and the number of failed reads."""
    rows: list[tuple] = []
    failures = 0
    probes = 0
    last = 0
    scan = f"SELECT rowid, {cols} FROM {table} WHERE rowid > ? ORDER BY rowid"
    while True:
        try:
            for r in db.execute(scan, (last,)):
                rows.append(tuple(r[1:]))
                last = int(r[0])
            return rows, failures
        except sqlite3.DatabaseError:
            failures += 1
        # jump ahead until a scan can start again, then probe the skipped rowids singly
        step, resume = 1, None
        while step < 1 << 62:
            try:
                first = db.execute(scan + " LIMIT 1", (last + step,)).fetchone()
            except sqlite3.DatabaseError:
                step *= 2
                continue
            resume = None if first is None else int(first[0])
            break
        upper = (last + step) if resume is None else resume
        for rowid in range(last + 1, min(upper, last + 1 + MAX_PROBES - probes)):
            probes += 1
            try:
                r = db.execute(f"SELECT {cols} FROM {table} WHERE rowid = ?", (rowid,)).fetchone()
            except sqlite3.DatabaseError:
                continue
            if r is not None:
                rows.append(tuple(r))
        if resume is None:
            return rows, failures
        last = resume - 1


def salvage_into(source: Path, db: sqlite3.Connection) -> SalvageReport:
    """Copy the readable rows of the outbox file ``source`` into the open outbox ``db``.

    Rows already in ``db`` win (they are newer). Waiting alerts keep ``first_sent`` (an
    in-doubt alert stays in doubt); from an outbox written before ``first_sent`` existed,
    every row counts as in doubt.
    """
    try:
        src = sqlite3.connect(source)  # our own moved-aside copy (with its WAL, if any)
    except sqlite3.Error as exc:
        return SalvageReport(source, error=str(exc))
    try:
        cols = _columns(src, "outbox")
        if not cols:
            try:
                src.execute("SELECT 1 FROM sqlite_master").fetchall()
            except sqlite3.DatabaseError as exc:
                return SalvageReport(source, error=str(exc))
        sent = "first_sent" if "first_sent" in cols else "created"
        pending, bad1 = (
            read_rows(
                src,
                "outbox",
                f"alert_id, topic, payload, digest, created, attempts, {sent}",
            )
            if cols
            else ([], 0)
        )
        ledger, bad2 = (
            read_rows(src, "delivered", "alert_id, topic, digest, delivered_at, how")
            if _columns(src, "delivered")
            else ([], 0)
        )
        meta, bad3 = read_rows(src, "meta", "key, value") if _columns(src, "meta") else ([], 0)
    finally:
        src.close()
    n_pending, n_ledger = import_rows(db, pending, ledger, meta)
    return SalvageReport(source, n_pending, n_ledger, bad1 + bad2 + bad3)


def import_rows(
    db: sqlite3.Connection,
    pending: Iterable[tuple],
    delivered: Iterable[tuple],
    meta: Iterable[tuple],
) -> tuple[int, int]:
    """Insert salvaged rows (one fsynced transaction); returns (pending, ledger) added."""
    n_pending = n_ledger = 0
    db.execute("BEGIN IMMEDIATE")
    try:
        for r in pending:
            if not _plausible(r, (str, str, bytes, str)):
                continue
            cur = db.execute(
                "INSERT OR IGNORE INTO outbox (alert_id, topic, payload, digest, created,"
                " attempts, first_sent) VALUES (?, ?, ?, ?, ?, ?, ?)",
                r,
            )
            n_pending += cur.rowcount
        for r in delivered:
            if not _plausible(r, (str, str, str)):
                continue
            cur = db.execute(
                "INSERT OR IGNORE INTO delivered (alert_id, topic, digest, delivered_at, how)"
                " VALUES (?, ?, ?, ?, ?)",
                r,
            )
            n_ledger += cur.rowcount
        db.executemany(
            "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
            [r for r in meta if _plausible(r, (str, str))],
        )
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return n_pending, n_ledger


def _plausible(row: tuple, types: tuple[type, ...]) -> bool:
    """Rows read from a damaged file: the leading fields must have their types."""
    return all(isinstance(v, t) for v, t in zip(row, types, strict=False))
