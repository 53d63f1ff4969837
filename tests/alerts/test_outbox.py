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
