"""One run's delivery: outbox backlog, in-doubt check, new alerts, outcome counts.

Used by ``fedids detect`` (file and streaming input) so that both follow the same rules:

1. if this process may drain the outbox (flock): check in-doubt alerts against their
   topic (:mod:`fedids.alerts.indoubt`), then hand the backlog to the producer (it is sent
   while new flows are scored);
2. new alerts are committed to the outbox (fsynced) first; only versions that are neither
   waiting nor already delivered are handed to the producer; a version already in the
   delivered ledger is counted as *skipped*, never produced again;
3. ``finish``: bounded wait for delivery reports, then the counts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from fedids.alerts.indoubt import InDoubtReport, resolve_in_doubt
from fedids.alerts.kafkaconf import producer_config
from fedids.alerts.outbox import AddResult, NewAlert, Outbox, PendingAlert
from fedids.alerts.producer import AlertPublisher, DeliveryHook
from fedids.alerts.stix import Alert

log = logging.getLogger(__name__)


@dataclass
class DeliveryOutcome:
    """Counts for the summary: each alert id is in at most one of delivered/skipped."""

    delivered: int = 0
    failed: int = 0
    skipped: int = 0  # versions already delivered (ledger, or found on the topic)
    found_on_topic: int = 0  # of those: in doubt after an interrupted run, found on the topic
    held: int = 0  # in doubt, topic unreadable: not sent this run
    pending: int = 0  # waiting in the outbox at the end
    errors: dict[str, int] = field(default_factory=dict)
    delivered_ids: list[str] = field(default_factory=list)
    skipped_ids: list[str] = field(default_factory=list)


class DeliverySession:
    """Deliver through ``box`` to Kafka at ``kafka`` (one producer for the session)."""

    def __init__(
        self,
        box: Outbox,
        kafka: str | None,
        *,
        kafka_settings: Mapping[str, str] | None,
        delivery_timeout: float,
        client_id: str,
        on_delivery: DeliveryHook | None = None,
        resend_in_doubt: bool = False,
    ):
        self.box = box
        self.kafka = kafka
        self.kafka_settings = dict(kafka_settings or {})
        self.delivery_timeout = delivery_timeout
        self.resend_in_doubt = resend_in_doubt
        conf = producer_config(kafka, delivery_timeout, kafka_settings, client_id)
        self.publisher: AlertPublisher | None = AlertPublisher(
            conf, box, delivery_timeout, on_delivery=on_delivery
        )
        self.in_doubt = InDoubtReport()
        self._skipped: set[str] = set()

    def start(self) -> None:
        """Check in-doubt alerts, then hand the backlog over (only the draining process)."""
        assert self.publisher is not None
        if not self.box.try_lock():
            log.warning("another fedids process is sending this outbox's backlog")
            return
        if not self.resend_in_doubt:
            self.in_doubt = resolve_in_doubt(
                self.box,
                self.kafka,
                self.kafka_settings,
                timeout=max(30.0, 3 * self.delivery_timeout),
                connect_timeout=self.delivery_timeout,
            )
            self._skipped.update(self.in_doubt.found_ids)
        backlog = self.box.count()
        if backlog:
            log.info("sending %d alert(s) left by earlier runs", backlog)
        held = set(self.in_doubt.held)
        self.publisher.submit(_without(self.box.iter_pending(), held))

    def add(
        self, alerts: Sequence[Alert], topic: str, meta: Mapping[str, str | None] | None = None
    ) -> AddResult:
        """Commit alerts (and ``meta``) durably, then hand the new versions over."""
        assert self.publisher is not None
        new = (NewAlert(a.alert_id, topic, a.payload, a.digest) for a in alerts)
        added = self.box.add(new, meta)
        self._skipped.update(added.delivered)
        if added.new:
            self.publisher.submit(self.box.pending_for(added.new))
        return added

    def poll(self) -> None:
        if self.publisher is not None:
            self.publisher.poll()

    def finish(self) -> DeliveryOutcome:
        """Wait (bounded) for delivery reports and count; idempotent."""
        out = DeliveryOutcome()
        if self.publisher is not None:
            result, self.publisher = self.publisher.finish(), None
            out.delivered = result.delivered
            out.failed = result.failed
            out.errors = dict(result.errors)
            out.delivered_ids = list(result.delivered_ids)
        self._skipped -= set(out.delivered_ids)
        out.skipped_ids = sorted(self._skipped)
        out.skipped = len(out.skipped_ids)
        out.found_on_topic = self.in_doubt.found
        out.held = len(self.in_doubt.held)
        out.pending = self.box.count()
        return out

    def abort(self) -> None:
        """After an error: still collect the reports already due (never raises)."""
        if self.publisher is not None:
            try:
                self.publisher.finish()
            except Exception:  # never hide the original error
                log.exception("could not finish the Kafka producer")
            self.publisher = None


def _without(items: Iterable[PendingAlert], seqs: set[int]) -> Iterator[PendingAlert]:
    for item in items:
        if item.seq not in seqs:
            yield item


def outcome_lines(o: DeliveryOutcome, where: str, outbox: object) -> list[str]:
    """The delivery part of a command's summary (duplicates counted apart)."""
    lines = [
        f"delivered {o.delivered} alert(s) to {where}; skipped {o.skipped} already delivered; "
        f"{o.pending} waiting in the outbox {outbox}"
    ]
    if o.found_on_topic:
        lines.append(
            f"{o.found_on_topic} alert(s) in doubt after an interrupted run were found on the "
            "topic: not sent again"
        )
    if o.held:
        lines.append(
            f"{o.held} alert(s) in doubt held back (the topic could not be read to check them); "
            "the next run checks again, --resend-in-doubt sends them anyway"
        )
    if o.errors:
        why = ", ".join(f"{k} x{v}" for k, v in sorted(o.errors.items()))
        lines.append(f"delivery failures: {why}")
    return lines
