"""Before re-sending an alert that may already be on the topic, look for it there.

An alert is *in doubt* when it was handed to a producer (``first_sent`` in the outbox) but
no delivery report confirmed it: the process died between the broker's ack and the
ledger update, a timed-out or purged message may have been stored anyway. Kafka's
idempotent producer de-duplicates retries only within one producer session, so a new run
must not simply produce it again.

The check reads the topic from the time the alerts were first handed over (minus
:data:`MARGIN_SECONDS` for clock steps; ``offsets_for_times``, falling back to the start of
a partition) up to the end of every partition, and compares message key = alert id and
the SHA-256 of the value with the stored version. Found versions move to the delivered
ledger (``how = found``) and are not sent again. If the topic cannot be read (broker
down, no READ permission), the in-doubt alerts are held back in this run, unless the user
asks to re-send them (``--resend-in-doubt``: at-least-once, receivers de-duplicate by id).

Why not Kafka transactions: tansu accepts them, but a committed transaction whose commit
answer is lost, or a crash right after it, leaves the same question open (was it
stored?), so the check is needed either way; transactions would add a transactional.id
to manage and require every reader to use read_committed, for no further guarantee.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fedids.alerts.kafkaconf import KafkaLogBridge, consumer_config
from fedids.alerts.outbox import InDoubtKey, Outbox

log = logging.getLogger(__name__)

#: the topic is read from this long before the first hand-over (clock steps, broker time)
MARGIN_SECONDS = 300.0


@dataclass
class InDoubtReport:
    """Outcome of checking in-doubt alerts against their topics."""

    checked: int = 0  # in-doubt alerts looked for
    found_ids: list[str] = field(default_factory=list)  # on the topic: not sent again
    held: list[int] = field(default_factory=list)  # seqs not checked: held back this run
    errors: list[str] = field(default_factory=list)  # why topics could not be read

    @property
    def found(self) -> int:
        return len(self.found_ids)


def _digest(value: bytes | None) -> str:
    return hashlib.sha256(value or b"").hexdigest()


def resolve_in_doubt(
    box: Outbox,
    bootstrap: str | None,
    kafka_settings: Mapping[str, str] | None,
    timeout: float,
    connect_timeout: float | None = None,
) -> InDoubtReport:
    """Check every in-doubt alert of ``box`` against its topic (see the module doc).

    ``connect_timeout`` bounds the wait for the topic's metadata (an unreachable broker
    should cost no more than a delivery attempt), ``timeout`` the whole read of a topic.
    """
    report = InDoubtReport()
    by_topic: dict[str, list[InDoubtKey]] = {}
    for a in box.in_doubt_keys():
        by_topic.setdefault(a.topic, []).append(a)
        report.checked += 1
    for topic, alerts in sorted(by_topic.items()):
        try:
            found = _scan(
                topic, alerts, bootstrap, kafka_settings, timeout, connect_timeout or timeout
            )
        except _Unreadable as exc:
            report.held += [a.seq for a in alerts]
            report.errors.append(f"{topic}: {exc}")
            log.warning(
                "%d alert(s) in doubt are held back: cannot read topic %s to check whether "
                "they were delivered (%s)",
                len(alerts),
                topic,
                exc,
            )
            continue
        if found:
            box.mark_delivered([a.seq for a in found], how="found")
            report.found_ids += [a.alert_id for a in found]
    return report


class _Unreadable(Exception):
    """The topic could not be read to the end in time."""


def _scan(
    topic: str,
    alerts: list[InDoubtKey],
    bootstrap: str | None,
    kafka_settings: Mapping[str, str] | None,
    timeout: float,
    connect_timeout: float,
) -> list[InDoubtKey]:
    """The in-doubt ``alerts`` whose exact version is on ``topic``."""
    from confluent_kafka import (
        OFFSET_BEGINNING,
        Consumer,
        KafkaError,
        KafkaException,
        TopicPartition,
    )

    wanted: dict[tuple[str, str], InDoubtKey] = {(a.alert_id, a.sha256): a for a in alerts}
    conf: dict[str, Any] = consumer_config(
        bootstrap, f"fedids-indoubt-{uuid.uuid4().hex[:8]}", True, kafka_settings
    )
    conf.update(
        {
            "enable.partition.eof": True,
            "logger": KafkaLogBridge(),
            "error_cb": lambda err: log.debug("Kafka: %s", err),
        }
    )
    deadline = time.monotonic() + timeout
    consumer = Consumer(conf)
    try:
        try:
            md = consumer.list_topics(topic, timeout=min(timeout, connect_timeout))
        except KafkaException as exc:
            raise _Unreadable(str(exc)) from exc
        meta = md.topics.get(topic)
        if meta is None or (
            meta.error is not None and meta.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
        ):
            return []  # no such topic: nothing of ours can be on it
        if meta.error is not None:
            raise _Unreadable(str(meta.error))
        parts = sorted(meta.partitions)
        if not parts:
            return []
        since_ms = int((min(a.first_sent or 0.0 for a in alerts) - MARGIN_SECONDS) * 1000)
        try:
            starts = consumer.offsets_for_times(
                [TopicPartition(topic, p, max(0, since_ms)) for p in parts],
                timeout=max(1.0, deadline - time.monotonic()),
            )
        except KafkaException:
            starts = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts]
        assign = []
        for tp in starts:
            if tp.error is not None or tp.offset < -1:
                assign.append(TopicPartition(topic, tp.partition, OFFSET_BEGINNING))
            elif tp.offset >= 0:
                assign.append(TopicPartition(topic, tp.partition, tp.offset))
            # offset -1: no message at or after that time in this partition
        if not assign:
            return []
        consumer.assign(assign)
        open_parts = {tp.partition for tp in assign}
        found: dict[int, InDoubtKey] = {}
        while open_parts and len(found) < len(wanted):
            if time.monotonic() >= deadline:
                raise _Unreadable(f"not read to its end within {timeout:.0f} s")
            for msg in consumer.consume(num_messages=1000, timeout=0.2):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        open_parts.discard(msg.partition())
                    elif err.fatal() or not err.retriable():
                        raise _Unreadable(str(err))
                    continue
                key = msg.key()
                if key is None:
                    continue
                hit = wanted.get((key.decode("utf-8", "replace"), _digest(msg.value())))
                if hit is not None:
                    found[hit.seq] = hit
        return sorted(found.values(), key=lambda a: a.seq)
    finally:
        consumer.close()
