"""librdkafka settings: ``-X key=value`` parsing, safe defaults, redaction for logs.

Every librdkafka property can be set from the command line so that fedids works with
any cluster (SASL, TLS, ...) without code changes. Values of sensitive properties
(passwords, keys, tokens) are never written to logs: use :func:`redact` whenever a
configuration is shown.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

from fedids.alerts.errors import AlertsInputError

log = logging.getLogger(__name__)

#: substrings of property names whose values must never be logged
_SENSITIVE = ("password", "secret", "token", "sasl.oauthbearer.config", "key.pem", "ssl.key")


def parse_settings(items: Iterable[str] | None) -> dict[str, str]:
    """Parse repeated ``key=value`` strings (the value may itself contain ``=``)."""
    settings: dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise AlertsInputError(f"librdkafka setting must look like key=value, got {item!r}")
        settings[key] = value
    return settings


def is_sensitive(key: str) -> bool:
    k = key.lower()
    return any(s in k for s in _SENSITIVE)


def redact(conf: Mapping[str, Any]) -> dict[str, Any]:
    """A copy safe to log: sensitive values replaced, callables shown by name."""
    out: dict[str, Any] = {}
    for k, v in conf.items():
        if is_sensitive(k):
            out[k] = "***"
        elif not isinstance(v, str | int | float | bool):
            out[k] = f"<{getattr(v, '__name__', type(v).__name__)}>"
        else:
            out[k] = v
    return out


def producer_config(
    bootstrap: str | None,
    delivery_timeout: float,
    overrides: Mapping[str, str] | None = None,
    client_id: str = "fedids-detect",
) -> dict[str, Any]:
    """Producer settings: idempotent, acks=all, bounded delivery time; ``overrides`` win.

    ``message.timeout.ms`` bounds how long librdkafka keeps retrying a message: after it,
    the delivery report fails and the alert simply stays in the outbox for the next run.
    """
    conf: dict[str, Any] = {
        "client.id": client_id,
        "enable.idempotence": True,
        "acks": "all",
        "message.timeout.ms": max(1000, int(delivery_timeout * 1000)),
        "socket.connection.setup.timeout.ms": max(1000, min(10_000, int(delivery_timeout * 1000))),
        "linger.ms": 5,
    }
    if bootstrap:
        conf["bootstrap.servers"] = bootstrap
    conf.update(overrides or {})
    if "bootstrap.servers" not in conf:
        raise AlertsInputError("no Kafka bootstrap servers: use --kafka HOST:PORT")
    if str(conf.get("enable.idempotence")).lower() in ("false", "0"):
        log.warning("enable.idempotence=false: a retried send may be stored twice by the broker")
    return conf


def consumer_config(
    bootstrap: str | None,
    group: str,
    from_beginning: bool,
    overrides: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Consumer settings: offsets are committed by fedids after handling, never automatically."""
    conf: dict[str, Any] = {
        "group.id": group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest" if from_beginning else "latest",
        # 10 s (Kafka's long-time default) rather than librdkafka's 45 s: a dead subscriber is
        # noticed sooner, and brokers that delay a group's first join by part of the session
        # timeout assign partitions sooner
        "session.timeout.ms": 10_000,
        "socket.connection.setup.timeout.ms": 10_000,
    }
    if bootstrap:
        conf["bootstrap.servers"] = bootstrap
    conf.update(overrides or {})
    if "bootstrap.servers" not in conf:
        raise AlertsInputError("no Kafka bootstrap servers: use --kafka HOST:PORT")
    if str(conf.get("enable.auto.commit")).lower() in ("true", "1"):
        raise AlertsInputError(
            "enable.auto.commit=true is not supported: fedids commits offsets after handling"
        )
    return conf


class KafkaLogBridge:
    """librdkafka log lines into Python logging, each distinct line once.

    An unreachable broker makes librdkafka log the same connection failure several times a
    second; the first one is shown as a warning, repeats go to debug.
    """

    _VOLATILE = re.compile(r"\(after \d+ms[^)]*\)|\d+ms|#\d+")

    def __init__(self, name: str = "fedids.kafka"):
        self._log = logging.getLogger(name)
        self._seen: set[str] = set()

    def log(self, level: int, fmt: str, *args: object) -> None:
        msg = fmt % args if args else fmt
        key = self._VOLATILE.sub("", msg)
        if key in self._seen:
            self._log.debug(msg)
            return
        if len(self._seen) < 1000:
            self._seen.add(key)
        self._log.log(min(level, logging.WARNING), msg)
