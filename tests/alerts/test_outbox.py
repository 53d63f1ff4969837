"""The durable outbox: survives restarts and crashes, replaces only changed alerts."""

from __future__ import annotations

import subprocess
import sys

from fedids.alerts.outbox import NewAlert, Outbox, default_outbox_dir


def new(i: int, digest: str = "d", topic: str = "t") -> NewAlert:
    return NewAlert(f"bundle--{i}", topic, f"payload-{i}-{digest}".encode(), digest)


def test_alerts_survive_reopening(tmp_path):
    with Outbox(tmp_path) as box:
        assert box.add(new(i) for i in range(5)).changed == 5
    with Outbox(tmp_path) as box:
        assert box.count() == 5
        assert [p.alert_id for p in box.iter_pending(chunk=2)] == [f"bundle--{i}" for i in range(5)]


def test_alerts_survive_a_killed_process(tmp_path):
    code = (
        "import os, sys; from fedids.alerts.outbox import Outbox, NewAlert\n"
        f"b = Outbox({str(tmp_path)!r}); b.add([NewAlert('bundle--x', 't', b'p', 'd')])\n"
        "os._exit(9)  # no close, no cleanup\n"
    )
    rc = subprocess.run([sys.executable, "-c", code], check=False).returncode
    assert rc == 9
    with Outbox(tmp_path) as box:
        assert box.ids() == {"bundle--x"}


def test_same_content_is_not_queued_twice_changed_content_replaces(tmp_path):
    with Outbox(tmp_path) as box:
        box.add([new(1)])
        first = box.pending()[0]
        assert box.add([new(1)]).waiting == ["bundle--1"]
        assert box.pending()[0].seq == first.seq
        assert box.add([new(1, digest="e")]).new == ["bundle--1"]
        [second] = box.pending()
        assert second.seq > first.seq and second.payload.endswith(b"-e")


def test_remove_by_seq_keeps_a_newer_version(tmp_path):
    with Outbox(tmp_path) as box:
        box.add([new(1)])
        old = box.pending()[0].seq
        box.add([new(1, digest="e")])
        box.mark_delivered([old])  # the delivery report of the old version arrives late
        assert box.count() == 1


def test_failures_are_recorded(tmp_path):
    with Outbox(tmp_path) as box:
        box.add([new(1)])
        seq = box.pending()[0].seq
        box.record_failures([(seq, "Local: Message timed out")])
        assert box.pending()[0].attempts == 1


def test_only_one_process_drains(tmp_path):
    with Outbox(tmp_path) as a, Outbox(tmp_path) as b:
        assert a.try_lock() and not b.try_lock()
    with Outbox(tmp_path) as c:
        assert c.try_lock()


def test_default_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("FEDIDS_OUTBOX", str(tmp_path / "x"))
    assert default_outbox_dir() == tmp_path / "x"
    monkeypatch.delenv("FEDIDS_OUTBOX")
    assert default_outbox_dir().parts[-2:] == (".fedids", "outbox")


def test_outbox_dir_is_private(tmp_path):
    with Outbox(tmp_path / "box"):
        pass
    assert (tmp_path / "box").stat().st_mode & 0o077 == 0


def test_a_delivered_version_is_never_queued_again(tmp_path):
    with Outbox(tmp_path) as box:
        box.add([new(1), new(2)])
        box.mark_delivered([p.seq for p in box.pending()])
        again = box.add([new(1), new(2, digest="e")])  # same flows again; 2 has changed
        assert again.delivered == ["bundle--1"] and again.new == ["bundle--2"]
        assert [p.alert_id for p in box.pending()] == ["bundle--2"]
        assert box.delivered_digest("bundle--1", "t") == "d"
        assert box.add([new(1, topic="other")]).new == ["bundle--1"]  # per topic


def test_sent_but_unconfirmed_is_in_doubt(tmp_path):
    with Outbox(tmp_path) as box:
        box.add([new(1), new(2), new(3)])
        s1, s2, s3 = (p.seq for p in box.pending())
        box.mark_sent([s1, s2], when=100.0)
        box.mark_sent([s1], when=200.0)  # the first hand-over time is kept
        box.unmark_sent([s2])  # never handed over after all
        box.mark_delivered([s3])
    with Outbox(tmp_path) as box:  # survives a restart
        [doubt] = box.in_doubt()
        assert (doubt.alert_id, doubt.first_sent) == ("bundle--1", 100.0)


def test_outbox_of_the_previous_format_is_migrated_all_in_doubt(tmp_path):
    import sqlite3

    db = sqlite3.connect(tmp_path / "outbox.sqlite3")
    db.executescript(
        "CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, alert_id TEXT NOT NULL"
        " UNIQUE, topic TEXT NOT NULL, payload BLOB NOT NULL, digest TEXT NOT NULL, created"
        " REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT);"
        "INSERT INTO outbox (alert_id, topic, payload, digest, created)"
        " VALUES ('bundle--old', 't', x'00', 'd', 42.0);"
    )
    db.close()
    with Outbox(tmp_path) as box:
        [doubt] = box.in_doubt()  # the old code may have sent it: check before re-sending
        assert (doubt.alert_id, doubt.first_sent) == ("bundle--old", 42.0)


def test_ledger_is_pruned_after_its_retention(tmp_path, monkeypatch):
    import fedids.alerts.outbox as outbox_mod

    with Outbox(tmp_path) as box:
        box.add([new(1)])
        box.mark_delivered([box.pending()[0].seq])
    monkeypatch.setattr(outbox_mod, "LEDGER_DAYS", -1.0)  # everything is older than that
    with Outbox(tmp_path) as box:
        assert box.delivered_count() == 0
