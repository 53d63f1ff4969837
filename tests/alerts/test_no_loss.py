"""Nothing is lost: broker down at start, broker killed mid-stream.

Each scenario accounts for every alert by its deterministic id: what the first broker
confirmed plus what the outbox delivered later to a second broker must be exactly the
alerts detected, with no id delivered twice.

These checks have teeth: ``test_*_without_durable_outbox_loses`` run the same scenarios
with the outbox replaced by a non-durable stand-in, or with the producer forgetting failed
alerts (what a plain fire-and-forget producer does), and assert that the same check then
finds lost alerts. (Also verified by hand: making ``AlertPublisher._persist`` delete
failed alerts, or making ``run_detect`` produce without ``Outbox.add``, fails
``test_broker_killed_mid_stream_outbox_delivers_the_rest`` and
``test_broker_down_at_start_then_everything_delivered``.)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from alerts_helpers import FlowSpec, MemoryOutbox, make_flows, read_topic, write_csv

from fedids.alerts.broker import free_port
from fedids.alerts.detect import run_detect
from fedids.alerts.producer import AlertPublisher

pytestmark = pytest.mark.kafka

N = 120
KILL_AFTER = 20
#: a tiny local queue so that alerts trickle out and the broker can die between them
TRICKLE = {"queue.buffering.max.messages": "4", "linger.ms": "0", "batch.num.messages": "1"}


def flows(tmp_path: Path, n: int = N) -> Path:
    specs = [FlowSpec(0, n=200)]
    specs += [FlowSpec(2, src=f"10.2.{i // 250}.{i % 250 + 1}", dst="10.0.0.1") for i in range(n)]
    return write_csv(make_flows(specs), tmp_path / "flows.csv")


def lost(expected: set[str], first: list[str], second: list[str | None]) -> set[str]:
    """Alerts neither broker has; also fails on duplicates and strangers."""
    assert len(second) == len(set(second)), "an alert was delivered twice by the outbox"
    assert not set(first) & set(second), "an alert confirmed by broker 1 was sent again"
    assert set(first) | set(second) <= expected, "unknown alert ids"
    return expected - set(first) - set(second)  # type: ignore[operator]


def broker_down_scenario(
    model_path: Path,
    tmp_path: Path,
    broker_factory: Callable[..., Any],
    topic: str,
    outbox: Callable[[], Any],
) -> tuple[set[str], list[str], list[str | None]]:
    csv = flows(tmp_path, 30)
    port = free_port()
    first = run_detect(
        model_path,
        csv,
        kafka=f"127.0.0.1:{port}",
        topic=topic,
        device_name="plc-7",
        outbox=outbox(),
        delivery_timeout=1.5,
    )
    assert first.delivered == 0 and first.exit_code == 3 and len(first.alerts) == 30
    b = broker_factory(port)  # the broker comes up; a later run (a new process) flushes
    second = run_detect(None, None, flush_only=True, kafka=b.address, outbox=outbox())
    received = [k for k, _ in read_topic(b.address, topic, expected=second.delivered or None)]
    return set(first.alert_ids), [], received


def killed_scenario(
    model_path: Path,
    tmp_path: Path,
    broker_factory: Callable[..., Any],
    topic: str,
    outbox: Callable[[], Any],
) -> tuple[set[str], list[str], list[str | None], Any]:
    csv = flows(tmp_path)
    b1 = broker_factory()
    confirmed: list[str] = []

    def on_delivery(alert_id: str, error: str | None) -> None:
        if error is None:
            confirmed.append(alert_id)
            if len(confirmed) == KILL_AFTER:
                b1.kill()  # SIGKILL by PID: the broker dies mid-stream

    first = run_detect(
        model_path,
        csv,
        kafka=b1.address,
        topic=topic,
        device_name="plc-7",
        outbox=outbox(),
        delivery_timeout=2.0,
        on_delivery=on_delivery,
        kafka_settings=TRICKLE,
    )
    assert not b1.alive()
    assert sorted(first.delivered_ids) == sorted(confirmed)
    b2 = broker_factory()
    second = run_detect(None, None, flush_only=True, kafka=b2.address, outbox=outbox())
    received = [k for k, _ in read_topic(b2.address, topic, expected=second.delivered or None)]
    return set(first.alert_ids), confirmed, received, first


def durable(tmp_path: Path) -> Callable[[], Path]:
    return lambda: tmp_path / "outbox"  # each run opens (and closes) the same directory


def test_broker_down_at_start_then_everything_delivered(
    model_path, tmp_path, broker_factory, topic
):
    expected, first, received = broker_down_scenario(
        model_path, tmp_path, broker_factory, topic, durable(tmp_path)
    )
    assert len(expected) == 30
    assert lost(expected, first, received) == set()


def test_broker_killed_mid_stream_outbox_delivers_the_rest(
    model_path, tmp_path, broker_factory, topic
):
    expected, confirmed, received, first = killed_scenario(
        model_path, tmp_path, broker_factory, topic, durable(tmp_path)
    )
    assert len(expected) == N
    assert KILL_AFTER <= len(confirmed) < N  # really mid-stream
    assert first.pending == N - len(confirmed) and first.exit_code == 3
    assert lost(expected, confirmed, received) == set()
    assert len(received) == N - len(confirmed)  # exact count, by id


def test_broker_down_without_durable_outbox_loses(model_path, tmp_path, broker_factory, topic):
    """Same scenario with an outbox that does not survive the process: the check fails."""
    expected, first, received = broker_down_scenario(
        model_path, tmp_path, broker_factory, topic, MemoryOutbox
    )
    assert lost(expected, first, received) == expected


def test_killed_broker_with_forgetful_producer_loses(
    model_path, tmp_path, broker_factory, topic, monkeypatch
):
    """Same scenario with a producer that forgets failed alerts: the check fails."""
    original = AlertPublisher._persist

    def forget_failures(self: AlertPublisher) -> None:
        self._delivered_seqs += [seq for seq, _ in self._failures]
        self._failures = []
        original(self)

    monkeypatch.setattr(AlertPublisher, "_persist", forget_failures)
    expected, confirmed, received, _ = killed_scenario(
        model_path, tmp_path, broker_factory, topic, durable(tmp_path)
    )
    assert lost(expected, confirmed, received), "the no-loss check should have found losses"
