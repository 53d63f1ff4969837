"""``fedids subscribe``: read STIX alerts from Kafka, validate, show, optionally save.

A consumer group member with ``enable.auto.commit=false``: an offset is stored only after
its message was handled (validated, printed, written) and committed in small batches
after the output file was flushed to disk. A crash therefore re-reads a few messages
(same alert ids) but never skips one. A message that is not a valid STIX bundle is
logged with its partition and offset and skipped; it never stops the subscriber.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from fedids.alerts.kafkaconf import KafkaLogBridge, consumer_config, redact
from fedids.alerts.stix import AlertSummary, StixValidationError, summarize, validate_bundle

log = logging.getLogger(__name__)

#: commit stored offsets after this many handled messages (and at least once a second)
COMMIT_EVERY = 100


@dataclass
class ConsumeReport:
    """What one ``consume`` call saw."""

    messages: int = 0  # handled messages (alerts + malformed)
    alerts: int = 0
    malformed: int = 0
    summaries: list[AlertSummary] = field(default_factory=list)
    malformed_at: list[tuple[int, int]] = field(default_factory=list)  # (partition, offset)


class _Output:
    """JSONL writer that can be made durable before offsets are committed."""

    def __init__(self, path: str | Path | None):
        self._f: IO[bytes] | None = None
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._f = open(path, "ab")  # noqa: SIM115 - closed in close()

    def write(self, payload: bytes) -> None:
        if self._f is not None:
            self._f.write(payload.rstrip(b"\n") + b"\n")

    def sync(self) -> None:
        if self._f is not None:
            self._f.flush()
            os.fsync(self._f.fileno())

    def close(self) -> None:
        if self._f is not None:
            self.sync()
            self._f.close()


def consume(
    kafka: str | None,
    topic: str,
    *,
    group: str = "fedids-subscribe",
    max_messages: int | None = None,
    timeout: float | None = None,
    idle_timeout: float | None = None,
    from_beginning: bool = False,
    kafka_settings: Mapping[str, str] | None = None,
    out: str | Path | None = None,
    on_alert: Callable[[AlertSummary], None] | None = None,
    stop: threading.Event | None = None,
    keep_summaries: bool = True,
) -> ConsumeReport:
    """Consume alerts from ``topic`` until ``max_messages`` handled, ``timeout`` seconds
    passed, no message for ``idle_timeout`` seconds (counted once partitions are assigned),
    or ``stop`` is set. Returns counts; ``out`` gets each valid bundle as a JSONL line.
    """
    from confluent_kafka import Consumer, KafkaError, KafkaException

    conf = consumer_config(kafka, group, from_beginning, kafka_settings)
    assigned = threading.Event()

    def on_assign(consumer: Any, partitions: list[Any]) -> None:
        assigned.set()

    conf["logger"] = KafkaLogBridge()
    conf["error_cb"] = lambda err: log.debug("Kafka: %s", err)
    log.debug("consumer settings: %s", redact(conf))
    consumer = Consumer(conf)
    consumer.subscribe([topic], on_assign=on_assign)
    output = _Output(out)
    report = ConsumeReport()
    started = time.monotonic()
    last_message = None
    uncommitted = 0
    last_commit = time.monotonic()

    def commit() -> None:
        nonlocal uncommitted, last_commit
        if uncommitted:
            output.sync()  # what is committed must already be on disk
            try:
                consumer.commit(asynchronous=False)
            except KafkaException as exc:  # e.g. a rebalance: messages are re-read
                log.warning("offset commit failed (messages may be read again): %s", exc)
            uncommitted = 0
        last_commit = time.monotonic()

    try:
        while True:
            if stop is not None and stop.is_set():
                break
            if max_messages is not None and report.messages >= max_messages:
                break
            now = time.monotonic()
            if timeout is not None and now - started >= timeout:
                break
            if idle_timeout is not None and assigned.is_set():
                last_message = last_message or now
                if now - last_message >= idle_timeout:
                    break
            if uncommitted and (uncommitted >= COMMIT_EVERY or now - last_commit >= 1.0):
                commit()
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    log.warning("Kafka consumer error: %s", msg.error())
                continue
            last_message = time.monotonic()
            _handle(msg, report, output, on_alert, keep_summaries)
            consumer.store_offsets(message=msg)
            uncommitted += 1
    finally:
        try:
            commit()
        finally:
            output.close()
            consumer.close()
    return report


def _handle(
    msg: Any,
    report: ConsumeReport,
    output: _Output,
    on_alert: Callable[[AlertSummary], None] | None,
    keep_summaries: bool,
) -> None:
    """Validate one message; a bad one is logged (partition, offset) and counted."""
    report.messages += 1
    value = msg.value()
    try:
        if value is None:
            raise StixValidationError("empty message")
        bundle = validate_bundle(value)
        summary = summarize(bundle)
    except StixValidationError as exc:
        report.malformed += 1
        report.malformed_at.append((msg.partition(), msg.offset()))
        log.warning(
            "skipping malformed message on %s partition %d offset %d: %s",
            msg.topic(),
            msg.partition(),
            msg.offset(),
            str(exc)[:300],
        )
        return
    except Exception as exc:  # never let one message stop the subscriber
        report.malformed += 1
        report.malformed_at.append((msg.partition(), msg.offset()))
        log.warning(
            "skipping unreadable message on %s partition %d offset %d: %s: %s",
            msg.topic(),
            msg.partition(),
            msg.offset(),
            type(exc).__name__,
            str(exc)[:300],
        )
        return
    report.alerts += 1
    if keep_summaries:
        report.summaries.append(summary)
    output.write(json.dumps(json.loads(value), separators=(",", ":")).encode())
    if on_alert is not None:
        on_alert(summary)
