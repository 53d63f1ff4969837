"""The subscriber skips malformed messages, keeps going, and commits after handling."""

from __future__ import annotations

import json
import logging

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from fedids.alerts.aggregate import AlertGroup
from fedids.alerts.stix import ModelInfo, build_alert
from fedids.alerts.subscriber import consume

pytestmark = pytest.mark.kafka

FAST_GROUP = {"session.timeout.ms": "6000"}


def alert_bytes(src: str) -> bytes:
    g = AlertGroup(
        "DoS",
        src,
        "10.0.0.9",
        1_640_995_200,
        60,
        3,
        1_640_995_201.0,
        1_640_995_202.0,
        0.9,
        0.95,
        (4000,),
        1,
        (502,),
        1,
        ("tcp",),
        (("tcp", 502),),
        True,
    )
    return build_alert(g, "plc-7", ModelInfo("multi", "x")).payload


def bad_pattern() -> bytes:
    data = json.loads(alert_bytes("10.0.0.99"))
    for o in data["objects"]:
        if o["type"] == "indicator":
            o["pattern"] = "[network-traffic:dst_port = "
    return json.dumps(data).encode()


def test_malformed_messages_are_skipped_and_offsets_committed(broker, topic, tmp_path, caplog):
    values = [
        alert_bytes("10.0.0.1"),
        b"not json at all",
        b'{"type": "indicator", "id": "x"}',
        b"\xff\xfe\x00garbage",
        bad_pattern(),
        None,  # a tombstone / empty message
        alert_bytes("10.0.0.2"),
    ]
    p = Producer({"bootstrap.servers": broker.address})
    for v in values:
        p.produce(topic, value=v, key=b"k", partition=0)  # one partition: a known order
    assert p.flush(10) == 0

    seen = []
    out = tmp_path / "alerts.jsonl"
    with caplog.at_level(logging.WARNING, logger="fedids.alerts.subscriber"):
        report = consume(
            broker.address,
            topic,
            group="g-malformed",
            from_beginning=True,
            max_messages=len(values),
            timeout=30,
            out=out,
            kafka_settings=FAST_GROUP,
            on_alert=seen.append,
        )
    assert (report.messages, report.alerts, report.malformed) == (7, 2, 5)
    assert [s.src for s in seen] == ["10.0.0.1", "10.0.0.2"]
    assert report.malformed_at == [(0, 1), (0, 2), (0, 3), (0, 4), (0, 5)]
    assert caplog.text.count("partition 0 offset") == 5
    assert len(out.read_text().splitlines()) == 2

    # offsets were committed after handling: the group resumes after the last message
    c = Consumer({"bootstrap.servers": broker.address, "group.id": "g-malformed"})
    try:
        [tp] = c.committed([TopicPartition(topic, 0)], timeout=10)
        assert tp.offset == len(values)
    finally:
        c.close()


def test_consume_stops_on_timeout_without_messages(broker, topic):
    report = consume(
        broker.address,
        topic,
        group="g-empty",
        from_beginning=True,
        timeout=1.0,
        kafka_settings=FAST_GROUP,
    )
    assert report.messages == 0
