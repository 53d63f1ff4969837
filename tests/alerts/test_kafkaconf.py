"""librdkafka settings: -X parsing, defaults, overrides, secrets never shown."""

from __future__ import annotations

import pytest

from fedids.alerts.errors import AlertsInputError
from fedids.alerts.kafkaconf import consumer_config, parse_settings, producer_config, redact


def test_parse_settings():
    got = parse_settings(["security.protocol=SASL_SSL", "sasl.oauthbearer.config=a=b c=d"])
    assert got == {"security.protocol": "SASL_SSL", "sasl.oauthbearer.config": "a=b c=d"}
    for bad in ("novalue", "=x"):
        with pytest.raises(AlertsInputError, match="key=value"):
            parse_settings([bad])


def test_producer_defaults_and_overrides():
    conf = producer_config("h:9092", 7.5, {"linger.ms": "50", "compression.type": "zstd"})
    assert conf["enable.idempotence"] is True and conf["acks"] == "all"
    assert conf["message.timeout.ms"] == 7500
    assert conf["linger.ms"] == "50" and conf["compression.type"] == "zstd"
    assert producer_config(None, 5, {"bootstrap.servers": "x:1"})["bootstrap.servers"] == "x:1"
    with pytest.raises(AlertsInputError, match="bootstrap"):
        producer_config(None, 5, {})


def test_consumer_commits_manually():
    conf = consumer_config("h:9092", "g", True)
    assert conf["enable.auto.commit"] is False and conf["auto.offset.reset"] == "earliest"
    assert consumer_config("h:9092", "g", False)["auto.offset.reset"] == "latest"
    with pytest.raises(AlertsInputError, match="auto.commit"):
        consumer_config("h:9092", "g", True, {"enable.auto.commit": "true"})


def test_redact_hides_secrets():
    shown = redact(
        {
            "sasl.password": "hunter2",
            "ssl.key.password": "k",
            "ssl.key.pem": "-----BEGIN",
            "sasl.oauthbearer.client.secret": "s",
            "sasl.username": "alice",
            "error_cb": print,
        }
    )
    text = repr(shown)
    assert "hunter2" not in text and "BEGIN" not in text and "'s'" not in text
    assert shown["sasl.username"] == "alice" and shown["error_cb"] == "<print>"
