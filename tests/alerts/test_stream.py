"""``fedids detect --input-topic``: flows from Kafka give the same alerts as a file."""

from __future__ import annotations

import json

import pytest
from alerts_helpers import T0, FlowSpec, make_flows, read_topic
from confluent_kafka import Consumer, Producer, TopicPartition

from fedids.alerts.detect import run_detect
from fedids.alerts.stix import validate_bundle
from fedids.alerts.stream import run_detect_stream

pytestmark = pytest.mark.kafka

FAST_GROUP = {"session.timeout.ms": "6000"}
SPECS = [
    FlowSpec(0, n=50),
    FlowSpec(1, n=12),
    # two windows later: the first window closes early, but the burst goes on (130 s of
    # silence < 5 windows): the same alert gets a second version with the grown count
    FlowSpec(1, start=T0 + 130, n=5),
    FlowSpec(3, src="10.0.0.77", n=2),
]


def produce_flows(address: str, topic: str) -> int:
    rows = make_flows(SPECS).to_dicts()
    p = Producer({"bootstrap.servers": address})
    p.produce(topic, value=json.dumps(rows[:10]).encode(), partition=0)  # an array of flows
    for row in rows[10:]:
        p.produce(topic, value=json.dumps(row).encode(), partition=0)  # one flow per message
    p.produce(topic, value=b"{broken", partition=0)
    assert p.flush(10) == 0
    return len(rows) - 10 + 2


def test_stream_matches_file_mode_and_replay_is_not_resent(model_path, broker, tmp_path):
    flows_topic, alerts_topic = "flows-stream", "alerts-stream"
    n_messages = produce_flows(broker.address, flows_topic)
    common = dict(
        kafka=broker.address,
        topic=alerts_topic,
        device_name="plc-7",
        outbox=tmp_path / "outbox",
        kafka_settings=FAST_GROUP,
        from_beginning=True,
        idle_timeout=1.5,
        timeout=40,
    )
    report = run_detect_stream(model_path, flows_topic, group="det-a", **common)
    assert (report.messages, report.malformed, report.flows) == (n_messages, 1, 69)
    assert report.pending == 0 and report.delivered == report.alerts == 3

    file_mode = run_detect(model_path, make_flows(SPECS), device_name="plc-7")
    assert len(file_mode.alerts) == 2  # the DoS burst and the CommInj flows
    assert set(report.alert_ids) == set(file_mode.alert_ids)  # same ids as from a file
    counts = {a.alert_id: a.group.count for a in file_mode.alerts}
    got = read_topic(broker.address, alerts_topic, expected=3)
    versions: dict[str, list[int]] = {}
    for key, value in got:  # one key -> one partition: versions arrive in order
        sighting = next(o for o in validate_bundle(value).objects if o.type == "sighting")
        versions.setdefault(key, []).append(sighting.count)
    dos = next(a.alert_id for a in file_mode.alerts if a.group.attack_class == "DoS")
    assert versions[dos] == [12, 17]  # one alert, extended (not a second alert)
    assert {k: v[-1] for k, v in versions.items()} == counts  # latest = what a file gives

    c = Consumer({"bootstrap.servers": broker.address, "group.id": "det-a"})
    try:
        [tp] = c.committed([TopicPartition(flows_topic, 0)], timeout=10)
        assert tp.offset == n_messages  # every flow handled and its alerts stored
    finally:
        c.close()

    # a replay (crash before the commit, or a new group) must not re-send closed windows
    again = run_detect_stream(model_path, flows_topic, group="det-b", **common)
    assert again.flows == 69 and again.alerts == 0 and again.late == report.detections
    assert len(read_topic(broker.address, alerts_topic)) == 3
