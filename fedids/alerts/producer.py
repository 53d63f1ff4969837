"""Send alerts from the outbox to Kafka with an idempotent confluent-kafka producer.

An alert moves from the outbox to its delivered ledger only when its delivery report says
the broker stored it (``acks=all``). Before a batch is handed to the producer it is marked
as sent (fsynced): if the process dies between the broker's ack and the ledger update,
the next run finds it *in doubt* and checks the topic instead of sending it again
(:mod:`fedids.alerts.indoubt`). Failures (broker down, timeouts, purged at exit) leave it
in the outbox for the next run. A version is handed to a producer at most once per
publisher. Every wait is bounded by the delivery timeout, so a missing broker costs at
most that long and never hangs the process.

Once a delivery fails, no further alerts are handed to the producer in this run: they
would most likely fail the same way, and each would cost another timeout.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from fedids.alerts.kafkaconf import KafkaLogBridge, redact
from fedids.alerts.outbox import PendingAlert

log = logging.getLogger(__name__)

#: delivery-report callback for callers that want progress: (alert id, error or None)
DeliveryHook = Callable[[str, str | None], None]


#: alerts marked as sent (one fsynced transaction) before they are handed over together
CHUNK = 200
#: persist confirmed deliveries after this many, or this many seconds
PERSIST_EVERY = 500
PERSIST_SECONDS = 1.0


class OutboxLike(Protocol):
    """What the publisher needs from an outbox (see :class:`fedids.alerts.outbox.Outbox`)."""

    def mark_sent(self, seqs: list[int]) -> None: ...

    def unmark_sent(self, seqs: list[int]) -> None: ...

    def mark_delivered(self, seqs: list[int]) -> None: ...

    def record_failures(self, failures: list[tuple[int, str]]) -> None: ...


@dataclass
class DeliveryResult:
    """What happened to the alerts handed to one publisher."""

    delivered: int = 0
    failed: int = 0
    not_sent: int = 0  # left in the outbox without an attempt (after a failure / deadline)
    errors: Counter[str] = field(default_factory=Counter)
    delivered_ids: list[str] = field(default_factory=list)


class AlertPublisher:
    """Produce outbox entries; forget them in the outbox once delivered."""

    def __init__(
        self,
        conf: Mapping[str, Any],
        outbox: OutboxLike,
        delivery_timeout: float,
        on_delivery: DeliveryHook | None = None,
        producer_factory: Callable[[dict[str, Any]], Any] | None = None,
    ):
        self.outbox = outbox
        self.delivery_timeout = float(delivery_timeout)
        self.on_delivery = on_delivery
        self.result = DeliveryResult()
        self._delivered_seqs: list[int] = []
        self._failures: list[tuple[int, str]] = []
        self._handed: set[int] = set()  # versions given to the producer (never twice)
        self._last_persist = time.monotonic()
        self._stopped = False
        self._fatal: str | None = None
        full = dict(conf)
        full["error_cb"] = self._on_error
        full["logger"] = KafkaLogBridge()
        log.debug("producer settings: %s", redact(full))
        if producer_factory is None:
            from confluent_kafka import Producer

            producer_factory = Producer
        self._producer: Any = producer_factory(full)

    # -- callbacks (run inside poll/flush, on this thread) --------------------------------

    def _on_error(self, err: Any) -> None:
        # librdkafka reports transient connection trouble here too; only fatal ones stop us
        if getattr(err, "fatal", lambda: False)():
            self._fatal = str(err)
            self._stopped = True
            log.error("Kafka producer fatal error: %s", err)
        else:
            log.debug("Kafka: %s", err)

    def _report(self, seq: int, alert_id: str) -> Callable[[Any, Any], None]:
        def on_delivery(err: Any, _msg: Any) -> None:
            if err is None:
                self.result.delivered += 1
                self.result.delivered_ids.append(alert_id)
                self._delivered_seqs.append(seq)
            else:
                reason = getattr(err, "name", lambda: str(err))()
                self.result.failed += 1
                self.result.errors[reason] += 1
                self._failures.append((seq, str(err)))
                self._stopped = True  # stop handing out more: they would fail the same way
            if self.on_delivery is not None:
                self.on_delivery(alert_id, None if err is None else str(err))

        return on_delivery

    # -- producing -------------------------------------------------------------------------

    def submit(self, alerts: Iterable[PendingAlert]) -> None:
        """Hand alerts to the producer (non-blocking unless its queue is full).

        Each chunk is marked as sent in the outbox first. Versions already handed over by
        this publisher are skipped. Stops early, leaving the rest in the outbox, after a
        failed delivery, a fatal error, or when the local queue stayed full for the whole
        delivery timeout.
        """
        chunk: list[PendingAlert] = []
        for a in alerts:
            if a.seq in self._handed:
                continue
            if self._stopped:
                self.result.not_sent += 1
                continue
            chunk.append(a)
            if len(chunk) >= CHUNK:
                self._submit_chunk(chunk)
                chunk = []
        if chunk:
            self._submit_chunk(chunk)

    def _submit_chunk(self, chunk: list[PendingAlert]) -> None:
        self.outbox.mark_sent([a.seq for a in chunk])
        unsent: list[int] = []
        for a in chunk:
            if self._stopped:
                self.result.not_sent += 1
                if a.first_sent is None:
                    unsent.append(a.seq)  # never handed over: not in doubt after all
                continue
            self._handed.add(a.seq)
            if not self._produce(a) and a.first_sent is None:
                unsent.append(a.seq)
            self.poll()
        self.outbox.unmark_sent(unsent)

    def _produce(self, a: PendingAlert) -> bool:
        """Hand one alert to librdkafka; False when it certainly was not handed over."""
        wait_until: float | None = None
        while True:
            try:
                self._producer.produce(
                    a.topic,
                    key=a.alert_id.encode(),
                    value=a.payload,
                    on_delivery=self._report(a.seq, a.alert_id),
                )
                return True
            except BufferError:  # local queue full: serve reports, then retry
                now = time.monotonic()
                wait_until = wait_until or now + self.delivery_timeout
                self._producer.poll(0.05)
                if self._stopped or now >= wait_until:
                    self._stopped = True
                    self.result.not_sent += 1
                    return False
            except Exception as exc:  # KafkaException: bad topic name, message too large
                log.error("cannot send alert %s: %s", a.alert_id, exc)
                self.result.failed += 1
                self.result.errors[type(exc).__name__] += 1
                self._failures.append((a.seq, str(exc)))
                return False

    def poll(self) -> None:
        """Serve delivery reports; persist deliveries in batches (few in doubt at a crash)."""
        self._producer.poll(0)
        if len(self._delivered_seqs) >= PERSIST_EVERY or (
            self._delivered_seqs and time.monotonic() - self._last_persist >= PERSIST_SECONDS
        ):
            self._persist()

    def _persist(self) -> None:
        self._last_persist = time.monotonic()
        if self._delivered_seqs:
            self.outbox.mark_delivered(self._delivered_seqs)
            self._delivered_seqs = []
        if self._failures:
            self.outbox.record_failures(self._failures)
            self._failures = []

    def finish(self, timeout: float | None = None) -> DeliveryResult:
        """Wait (bounded) for outstanding reports, purge what is left, persist the outcome."""
        timeout = self.delivery_timeout + 2.0 if timeout is None else timeout
        try:
            remaining = self._producer.flush(timeout)
            if remaining:
                log.warning("%d alert(s) not confirmed in time; they stay in the outbox", remaining)
                self._producer.purge(in_queue=True, in_flight=True, blocking=False)
                self._producer.flush(1.0)  # delivers the purge reports (failures)
        finally:
            self._persist()
            # drop the producer now (not at some later garbage collection): its sockets
            # close, and nothing is outstanding any more after the purge above
            self._producer = None
        if self._fatal:
            self.result.errors["fatal: " + self._fatal] += 1
        return self.result
