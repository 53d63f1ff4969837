"""Alerts through a real broker (tansu): detect -> Kafka -> subscribe, all valid STIX."""

from __future__ import annotations

import json
import logging

import pytest
from alerts_helpers import T0, FlowSpec, make_flows, read_topic, window_of, write_csv

from fedids.alerts.broker import free_port
from fedids.alerts.detect import run_detect
from fedids.alerts.stix import alert_id_for, validate_bundle
from fedids.cli import main

pytestmark = pytest.mark.kafka

#: tansu delays a group's first assignment by about half the session timeout
FAST_GROUP = ["-X", "session.timeout.ms=6000"]
N = 40


def specs(n: int = N) -> list[FlowSpec]:
    """``n`` DoS alerts (one per source address) hidden among normal flows."""
    out = [FlowSpec(0, n=300)]
    out += [FlowSpec(1, src=f"10.1.{i // 200}.{i % 200 + 1}", n=1 + i % 3) for i in range(n)]
    return out


def expected_ids(device: str, n: int = N) -> set[str]:
    return {
        alert_id_for(device, "DoS", f"10.1.{i // 200}.{i % 200 + 1}", "10.0.0.9", window_of(T0))
        for i in range(n)
    }


def test_round_trip_detect_broker_subscribe(model_path, broker, topic, tmp_path, capsys):
    csv = write_csv(make_flows(specs()), tmp_path / "flows.csv")
    rc = main(
        [
            "detect",
            "--model",
            str(model_path),
            "--input",
            str(csv),
            "--kafka",
            broker.address,
            "--topic",
            topic,
            "--device-name",
            "plc-7",
            "--outbox",
            str(tmp_path / "outbox"),
            "-q",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0, out
    assert f"delivered {N} alert(s)" in out and "0 waiting in the outbox" in out

    messages = read_topic(broker.address, topic, expected=N)
    assert len(messages) == N
    keys = set()
    for key, value in messages:
        bundle = validate_bundle(value)
        assert key == bundle.id  # message key = deterministic alert id
        keys.add(key)
    assert keys == expected_ids("plc-7")

    jsonl = tmp_path / "received.jsonl"
    rc = main(
        [
            "subscribe",
            "--kafka",
            broker.address,
            "--topic",
            topic,
            "--group",
            "g1",
            "--from-beginning",
            "--max-messages",
            str(N),
            "--timeout",
            "30",
            "--out",
            str(jsonl),
            *FAST_GROUP,
        ]
    )
    printed = capsys.readouterr().out
    assert rc == 0
    assert f"received {N} message(s): {N} alert(s), 0 malformed" in printed
    assert sum(1 for line in printed.splitlines() if line.startswith("DoS ")) == N
    saved = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert {b["id"] for b in saved} == keys


def test_broker_unreachable_alerts_wait_then_deliver(model_path, broker_factory, topic, tmp_path):
    """Broker down at start: nothing delivered, all counted as waiting; later all arrive."""
    csv = write_csv(make_flows(specs(10)), tmp_path / "flows.csv")
    port = free_port()
    box = tmp_path / "outbox"
    down = run_detect(
        model_path,
        csv,
        kafka=f"127.0.0.1:{port}",
        topic=topic,
        device_name="plc-7",
        outbox=box,
        delivery_timeout=1.5,
    )
    assert (down.delivered, down.pending, down.exit_code) == (0, 10, 3)
    assert "_MSG_TIMED_OUT" in down.errors and "10 waiting in the outbox" in down.summary()
    b = broker_factory(port)
    rc = main(["detect", "--flush-only", "--kafka", b.address, "--outbox", str(box)])
    assert rc == 0
    got = read_topic(b.address, topic, expected=10)
    assert sorted(k for k, _ in got) == sorted(expected_ids("plc-7", 10))


def test_no_secret_in_logs_or_output(model_path, topic, tmp_path, caplog, capsys):
    csv = write_csv(make_flows(specs(2)), tmp_path / "flows.csv")
    secret = "S3cr3t-Pa55word"
    with caplog.at_level(logging.DEBUG):
        rc = main(
            [
                "-v",
                "detect",
                "--model",
                str(model_path),
                "--input",
                str(csv),
                "--kafka",
                f"127.0.0.1:{free_port()}",
                "--topic",
                topic,
                "--outbox",
                str(tmp_path / "ob"),
                "--delivery-timeout",
                "1",
                "-X",
                "security.protocol=SASL_PLAINTEXT",
                "-X",
                "sasl.mechanism=PLAIN",
                "-X",
                "sasl.username=alice",
                "-X",
                f"sasl.password={secret}",
            ]
        )
    captured = capsys.readouterr()
    assert rc == 3
    assert "sasl.password" in caplog.text  # the setting is logged ...
    assert secret not in caplog.text + captured.out + captured.err  # ... its value is not
