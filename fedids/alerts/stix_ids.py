"""Deterministic ids of fedids alerts (uuid5 in a fixed fedids namespace).

Why deterministic (a documented exception to STIX's "SHOULD be UUIDv4", see
docs/alerts.md): the alert id is what exactly-once delivery, the delivered ledger, the
in-doubt check on the topic and receivers' de-duplication all key on, and a newer
version of an alert (a burst that grew) must keep the ids of its objects. Deriving the
ids from the alert's stable key (device, class, source, destination, window where the
burst began, window length) makes them independent of any local state that can be lost
(a corrupt or deleted outbox) and of where detection runs (file or stream, re-run).
"""

from __future__ import annotations

import uuid

from fedids.alerts.aggregate import AlertGroup

#: namespace of every fedids alert id (never change it: ids would stop matching)
NAMESPACE = uuid.UUID("5f0c3e4e-5a36-5d1b-9f0e-2b7c6a1d9e41")


def alert_key(device: str, g: AlertGroup) -> str:
    return _key(device, g.attack_class, g.src, g.dst, g.window_start, g.window_seconds)


def _key(
    device: str, attack_class: str, src: str | None, dst: str | None, start: int, seconds: int
) -> str:
    return "|".join([device, attack_class, src or "", dst or "", str(int(start)), str(seconds)])


def uuid_for(*parts: str) -> str:
    """uuid5 of the parts in the fedids namespace (the same parts give the same id)."""
    return str(uuid.uuid5(NAMESPACE, "|".join(parts)))


def alert_id(device: str, g: AlertGroup) -> str:
    """The deterministic id of an alert (= its bundle id, and the Kafka message key)."""
    return f"bundle--{uuid_for('bundle', alert_key(device, g))}"


def alert_id_for(
    device: str,
    attack_class: str,
    src: str | None,
    dst: str | None,
    window_start: int,
    window_seconds: int = 60,
) -> str:
    """The id an alert for these values has (to look one up or recognize a re-send)."""
    key = _key(device, attack_class, src, dst, window_start, window_seconds)
    return f"bundle--{uuid_for('bundle', key)}"


def identity_id(device: str) -> str:
    return f"identity--{uuid_for('identity', device)}"
