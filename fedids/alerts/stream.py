"""``fedids detect --input-topic``: detect on flows read from a Kafka topic.

Each message holds one flow as a JSON object (keys = column names, as in the CSV) or a
JSON array of such objects. Flows are scored in micro-batches; detections wait in open
time windows (event time: the flows' ``StartTime``, else their arrival time) until the
watermark (latest flow time seen minus ``grace``) passes a window's end, or no flow came
for ``grace`` seconds, or the run ends. Closed windows become alerts as in file mode (same
aggregation, same deterministic ids) and go through the durable outbox. A burst still
going on when its window closes stays open (:mod:`fedids.alerts.bursts`): later windows
extend the same alert, which is sent again as a newer version (same id, grown count and
last_seen).

No loss, no double count:

* input offsets are committed only up to the oldest flow still held in an open window, and
  only after the alerts of closed windows are in the outbox (fsynced). A crash replays
  the uncommitted flows; nothing that was not turned into a stored alert is skipped.
* the end of the last closed window is stored in the outbox in the same transaction as
  its alerts; flows that arrive for an already closed window (late, or replayed after a
  crash) are counted and dropped, so a closed alert is never re-sent with a partial count.
* on a rebalance, the held detections of revoked partitions are dropped: their new owner
  replays them from the committed offsets.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from fedids.alerts.aggregate import aggregate, check_gap, default_gap
from fedids.alerts.bursts import OpenBursts
from fedids.alerts.delivery import DeliverySession
from fedids.alerts.detect import load_model
from fedids.alerts.errors import AlertsInputError
from fedids.alerts.flows import (
    context_table,
    decide,
    detections_table,
    feature_matrix,
    normal_class_index,
)
from fedids.alerts.kafkaconf import KafkaLogBridge, consumer_config, producer_config, redact
from fedids.alerts.outbox import NewAlert, Outbox, default_outbox_dir
from fedids.alerts.producer import DeliveryHook
from fedids.alerts.stix import Alert, build_alert

log = logging.getLogger(__name__)


@dataclass
class StreamReport:
    """Outcome of one ``run_detect_stream`` call."""

    messages: int = 0
    flows: int = 0
    malformed: int = 0
    detections: int = 0
    late: int = 0  # detections dropped: their window was already closed
    alerts: int = 0
    alert_ids: list[str] = field(default_factory=list)  # the latest 100,000
    delivered: int = 0
    skipped: int = 0  # versions already delivered (a replay): not sent again
    pending: int = 0
    outbox: Path | None = None

    @property
    def exit_code(self) -> int:
        return 3 if self.pending else 0

    def summary(self) -> str:
        return (
            f"read {self.messages} message(s): {self.flows} flow(s), {self.malformed} "
            f"malformed; {self.detections} detection(s) ({self.late} late, dropped) -> "
            f"{self.alerts} alert(s)\ndelivered {self.delivered} alert(s); skipped {self.skipped} "
            f"already delivered; {self.pending} waiting in the outbox {self.outbox}"
        )


def _rows(value: bytes | None, features: list[str]) -> list[dict[str, Any]]:
    """The flows of one message; raises ValueError for anything unusable."""
    if value is None:
        raise ValueError("empty message")
    data = json.loads(value)
    rows = data if isinstance(data, list) else [data]
    for row in rows:
        if not isinstance(row, dict):
            raise ValueError("a flow must be a JSON object")
        missing = [f for f in features if f not in row]
        if missing:
            raise ValueError(f"missing feature(s) {', '.join(missing[:5])}")
    return rows


class _Windows:
    """Detections held in open windows, with the input offsets they came from."""

    def __init__(self, window: int, closed_until: float):
        self.window = window
        self.closed_until = closed_until
        self.held: pl.DataFrame | None = None
        self.watermark = float("-inf")

    def add(self, det: pl.DataFrame, arrival: float) -> int:
        """Hold new detections; returns how many were late (dropped)."""
        if det.height == 0:
            return 0
        det = det.with_columns(
            pl.lit(arrival).alias("arrival"),
            ((pl.coalesce("start", pl.lit(arrival)) // self.window) * self.window)
            .cast(pl.Int64)
            .alias("_ws"),
        )
        fresh = det.filter(pl.col("_ws") + self.window > self.closed_until)
        late = det.height - fresh.height
        self.held = fresh if self.held is None else pl.concat([self.held, fresh], how="vertical")
        return late

    def take_closed(self, everything: bool) -> pl.DataFrame | None:
        """Remove and return the detections of windows that are now closed."""
        if self.held is None or self.held.height == 0:
            return None
        if everything:
            closed, self.held = self.held, None
        else:
            done = pl.col("_ws") + self.window <= self.watermark
            closed, self.held = self.held.filter(done), self.held.filter(~done)
        if closed.height == 0:
            return None
        end = float(closed["_ws"].max()) + self.window  # type: ignore[arg-type]
        self.closed_until = max(self.closed_until, end)
        return closed

    def oldest_offsets(self) -> dict[int, int]:
        if self.held is None or self.held.height == 0:
            return {}
        g = self.held.group_by("_p").agg(pl.col("_o").min())
        return dict(zip(g["_p"].to_list(), g["_o"].to_list(), strict=True))

    def drop_partitions(self, partitions: set[int]) -> None:
        if self.held is not None:
            self.held = self.held.filter(~pl.col("_p").is_in(list(partitions)))


def run_detect_stream(
    model: str | Path,
    input_topic: str,
    *,
    kafka: str | None,
    topic: str,
    group: str | None = None,
    window: float = 60.0,
    grace: float | None = None,
    burst_gap: float | None = None,
    threshold: float | None = None,
    device_name: str | None = None,
    outbox: str | Path | None = None,
    kafka_settings: Mapping[str, str] | None = None,
    batch_size: int = 10_000,
    delivery_timeout: float = 10.0,
    from_beginning: bool = False,
    max_flows: int | None = None,
    timeout: float | None = None,
    idle_timeout: float | None = None,
    on_alert: Callable[[Alert], None] | None = None,
    on_delivery: DeliveryHook | None = None,
    stop: threading.Event | None = None,
) -> StreamReport:
    """Consume flows from ``input_topic``, publish alerts to ``topic`` (same cluster).

    Runs until ``stop`` is set, ``timeout`` seconds passed, ``max_flows`` flows were read,
    or no message came for ``idle_timeout`` seconds (counted once partitions are
    assigned); then closes every open window and delivers what it can.
    """
    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

    if not topic:
        raise AlertsInputError("--input-topic needs --topic for the alerts")
    if not window > 0:
        raise AlertsInputError(f"--window must be positive seconds, got {window}")
    detector, info = load_model(model)
    features = list(detector.feature_names)
    normal = normal_class_index(detector.class_names)
    device = device_name or socket.gethostname()
    w = max(1, int(round(window)))
    grace = float(w if grace is None else grace)
    gap = default_gap(w) if burst_gap is None else float(burst_gap)
    check_gap(gap, w)
    box = Outbox(outbox or default_outbox_dir())
    if box.repair_report is not None:
        log.warning("%s", box.repair_report.message())
    progress_key = f"stream:{device}:{input_topic}:{w}:closed_until"
    windows = _Windows(w, float(box.get_meta(progress_key) or "-inf"))
    burst_key = f"stream:{device}:{input_topic}:{w}:{gap:g}:burst:"
    bursts = OpenBursts(burst_key, gap, box.meta_items(burst_key))
    report = StreamReport(outbox=box.directory)
    producer_config(kafka, delivery_timeout, kafka_settings)  # bad settings fail before reading
    cconf = consumer_config(
        kafka, group or f"fedids-detect-{device}", from_beginning, kafka_settings
    )
    cconf["logger"] = KafkaLogBridge()
    log.debug("input consumer settings: %s", redact(cconf))
    consumer = Consumer(cconf)
    assigned = threading.Event()
    next_offset: dict[int, int] = {}

    def on_assign(_c: Any, parts: list[Any]) -> None:
        assigned.set()

    def on_revoke(_c: Any, parts: list[Any]) -> None:
        gone = {p.partition for p in parts}
        windows.drop_partitions(gone)  # their new owner replays them from committed offsets
        for p in gone:
            next_offset.pop(p, None)

    consumer.subscribe([input_topic], on_assign=on_assign, on_revoke=on_revoke)

    def deliver() -> None:
        session = DeliverySession(
            box,
            kafka,
            kafka_settings=kafka_settings,
            delivery_timeout=delivery_timeout,
            client_id=f"fedids-{device}",
            on_delivery=on_delivery,
        )
        try:
            session.start()  # in-doubt check, then everything waiting in the outbox
            outcome = session.finish()
        finally:
            session.abort()
        report.delivered += outcome.delivered
        report.skipped += outcome.skipped

    def close(everything: bool) -> None:
        closed = windows.take_closed(everything)
        if closed is not None:
            now = datetime.now(UTC)
            groups, meta = bursts.extend(aggregate(closed, w, time.time(), gap))
            meta.update(bursts.prune(windows.watermark))
            meta[progress_key] = repr(windows.closed_until)
            alerts = [build_alert(g, device, info, now) for g in groups]
            added = box.add(
                (NewAlert(a.alert_id, topic, a.payload, a.digest) for a in alerts), meta
            )
            report.skipped += len(added.delivered)
            report.alerts += len(alerts)
            report.alert_ids = (report.alert_ids + [a.alert_id for a in alerts])[-100_000:]
            for a in alerts:
                if on_alert is not None:
                    on_alert(a)
        oldest = windows.oldest_offsets()
        commits = [
            TopicPartition(input_topic, p, min(off, oldest.get(p, off)))
            for p, off in next_offset.items()
        ]
        if commits:
            try:
                consumer.commit(offsets=commits, asynchronous=False)
            except KafkaException as exc:  # e.g. during a rebalance: flows are replayed
                log.warning("input offset commit failed (flows may be read again): %s", exc)
        if closed is not None or (everything and box.count()):
            deliver()

    started = last_message = quiet_since = time.monotonic()
    try:
        while True:
            if stop is not None and stop.is_set():
                break
            if max_flows is not None and report.flows >= max_flows:
                break
            now_m = time.monotonic()
            if timeout is not None and now_m - started >= timeout:
                break
            if not assigned.is_set():
                last_message = quiet_since = now_m
            elif idle_timeout is not None and now_m - last_message >= idle_timeout:
                break
            msgs = consumer.consume(num_messages=batch_size, timeout=0.5)
            rows: list[dict[str, Any]] = []
            where: list[tuple[int, int]] = []
            for m in msgs:
                if m.error():
                    if m.error().code() != KafkaError._PARTITION_EOF:
                        log.warning("Kafka consumer error: %s", m.error())
                    continue
                report.messages += 1
                next_offset[m.partition()] = m.offset() + 1
                try:
                    got = _rows(m.value(), features)
                except (ValueError, UnicodeDecodeError) as exc:
                    report.malformed += 1
                    log.warning(
                        "skipping malformed flow message on %s partition %d offset %d: %s",
                        m.topic(),
                        m.partition(),
                        m.offset(),
                        str(exc)[:200],
                    )
                    continue
                rows += got
                where += [(m.partition(), m.offset())] * len(got)
            if rows:
                last_message = quiet_since = time.monotonic()
                report.flows += len(rows)
                try:
                    det, latest = _score(
                        detector, normal, threshold, features, rows, where, input_topic
                    )
                except AlertsInputError as exc:  # e.g. text in a feature column
                    report.malformed += len(rows)
                    log.error("skipping %d flow(s) that cannot be scored: %s", len(rows), exc)
                    continue
                report.detections += det.height
                report.late += windows.add(det, time.time())
                windows.watermark = max(windows.watermark, (latest or time.time()) - grace)
                close(everything=False)
            elif assigned.is_set() and time.monotonic() - quiet_since >= grace:
                close(everything=True)  # quiet input: do not hold alerts back
                quiet_since = time.monotonic()
        close(everything=True)
    finally:
        try:
            consumer.close()
        finally:
            report.pending = box.count()
            box.close()
    return report


def _score(
    detector: Any,
    normal: int,
    threshold: float | None,
    features: list[str],
    rows: list[dict[str, Any]],
    where: list[tuple[int, int]],
    source: str,
) -> tuple[pl.DataFrame, float | None]:
    """Detections of one micro-batch (with partition/offset columns) and its latest flow time."""
    df = pl.from_dicts(rows, infer_schema_length=None, strict=False)
    verdicts = decide(
        detector.predict_proba(feature_matrix(df, features, source)), normal, threshold
    )
    det = detections_table(df, verdicts, detector.class_names)
    pos = np.asarray(where, dtype=np.int64).reshape(-1, 2)[verdicts.flagged]
    det = det.with_columns(pl.Series("_p", pos[:, 0]), pl.Series("_o", pos[:, 1]))
    latest = context_table(df)["start"].max()
    return det, (None if latest is None else float(latest))  # type: ignore[arg-type]
