"""In-doubt alerts are looked for on the topic (real broker) before anything is re-sent."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer

from fedids.alerts.broker import free_port
from fedids.alerts.detect import run_detect
from fedids.alerts.indoubt import resolve_in_doubt
from fedids.alerts.outbox import NewAlert, Outbox

pytestmark = pytest.mark.kafka


def in_doubt_box(tmp_path, topic):  # type: ignore[no-untyped-def]
    box = Outbox(tmp_path / "outbox")
    box.add(
        [
            NewAlert("bundle--a", topic, b"version-1", "d1"),  # stored by the broker
            NewAlert("bundle--b", topic, b"version-1", "d1"),  # broker has another version
            NewAlert("bundle--c", topic, b"version-1", "d1"),  # never reached the broker
        ]
    )
    box.mark_sent([p.seq for p in box.pending()])
    return box


def test_found_versions_are_not_sent_again(broker, topic, tmp_path):
    p = Producer({"bootstrap.servers": broker.address})
    p.produce(topic, key=b"bundle--a", value=b"version-1")
    p.produce(topic, key=b"bundle--b", value=b"version-0")
    p.produce(topic, key=b"someone-else", value=b"version-1")
    assert p.flush(10) == 0
    with in_doubt_box(tmp_path, topic) as box:
        report = resolve_in_doubt(box, broker.address, None, timeout=20)
        assert (report.checked, report.found_ids, report.held) == (3, ["bundle--a"], [])
        assert box.ids() == {"bundle--b", "bundle--c"} and box.delivered_count() == 1
        assert box.delivered_digest("bundle--a", topic) == "d1"


def test_missing_topic_means_nothing_was_delivered(broker, tmp_path):
    with in_doubt_box(tmp_path, "never-written") as box:
        report = resolve_in_doubt(box, broker.address, None, timeout=20)
        assert report.found == 0 and report.held == [] and box.count() == 3


def test_unreadable_topic_holds_alerts_back_unless_asked(tmp_path):
    down = f"127.0.0.1:{free_port()}"
    with in_doubt_box(tmp_path, "alerts") as box:
        report = resolve_in_doubt(box, down, None, timeout=1.5)
        assert report.found == 0 and len(report.held) == 3 and report.errors
    flush = dict(flush_only=True, kafka=down, outbox=tmp_path / "outbox", delivery_timeout=1)
    held = run_detect(None, None, **flush)
    assert held.delivery.held == 3 and held.failed == 0 and held.exit_code == 3
    assert "3 alert(s) in doubt held back" in held.summary()
    forced = run_detect(None, None, resend_in_doubt=True, **flush)
    assert forced.delivery.held == 0 and forced.failed == 3  # tried (broker still down)
