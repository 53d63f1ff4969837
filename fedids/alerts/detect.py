"""``fedids detect``: score flows, build STIX alerts, store them durably, deliver to Kafka.

Order of work, and why:

1. load the model and read the flows first, so a bad file fails fast (exit 2) without
   touching Kafka;
2. open the outbox (a corrupt one is moved aside and salvaged, never fatal), check alerts
   left in doubt by an interrupted run against the topic, and hand the backlog to the
   producer (sent in the background while this run scores);
3. score in batches, aggregate, build and validate one STIX bundle per alert;
4. write the alerts to ``--out`` (if asked; always, whatever happens to the outbox), then
   commit them to the outbox (fsync); versions already delivered are skipped;
5. produce the new ones; each moves to the delivered ledger when its delivery report
   succeeds; wait for reports at most ``delivery_timeout`` (+2 s), then report.

The function the CLI and the demo call is :func:`run_detect`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from fedids.alerts.aggregate import aggregate, check_gap
from fedids.alerts.delivery import DeliveryOutcome, DeliverySession, outcome_lines
from fedids.alerts.errors import AlertsInputError
from fedids.alerts.flows import (
    decide,
    detections_table,
    feature_matrix,
    normal_class_index,
    read_flows,
    score,
)
from fedids.alerts.outbox import Outbox, default_outbox_dir
from fedids.alerts.producer import DeliveryHook
from fedids.alerts.stix import Alert, ModelInfo, build_alert, summarize

log = logging.getLogger(__name__)

#: exit status when alerts could not be delivered and wait in the outbox
EXIT_PENDING = 3


@dataclass
class DetectReport:
    """Outcome of one ``run_detect`` call."""

    flows: int = 0
    detections: int = 0
    alerts: list[Alert] = field(default_factory=list)
    kafka: str | None = None
    topic: str | None = None
    delivery: DeliveryOutcome = field(default_factory=DeliveryOutcome)
    outbox: Path | None = None
    outbox_notice: str | None = None  # a corrupt outbox was moved aside (one line)
    outbox_error: str | None = None  # the outbox could not be used at all
    out_file: Path | None = None
    score_seconds: float = 0.0
    total_seconds: float = 0.0
    flush_only: bool = False

    @property
    def alert_ids(self) -> list[str]:
        return [a.alert_id for a in self.alerts]

    # the delivery counts, as attributes (what the demo and tests read)
    @property
    def delivered(self) -> int:
        return self.delivery.delivered

    @property
    def skipped(self) -> int:
        return self.delivery.skipped

    @property
    def failed(self) -> int:
        return self.delivery.failed

    @property
    def pending(self) -> int:
        return self.delivery.pending

    @property
    def errors(self) -> dict[str, int]:
        return self.delivery.errors

    @property
    def delivered_ids(self) -> list[str]:
        return self.delivery.delivered_ids

    @property
    def exit_code(self) -> int:
        if self.outbox_error:
            return 2
        return EXIT_PENDING if self.kafka and (self.pending or self.delivery.held) else 0

    def summary(self) -> str:
        lines = []
        if self.outbox_notice:
            lines.append(f"warning: {self.outbox_notice}")
        if not self.flush_only:
            lines.append(
                f"scored {self.flows} flow(s) in {self.score_seconds:.2f} s: "
                f"{self.detections} detection(s) -> {len(self.alerts)} alert(s)"
            )
        if self.out_file:
            lines.append(f"wrote {len(self.alerts)} alert(s) to {self.out_file}")
        if self.outbox_error:
            lines.append(f"error: {self.outbox_error}; nothing was sent to Kafka")
        elif self.kafka:
            where = (
                f"{self.topic} on {self.kafka}" if self.topic else f"their topics on {self.kafka}"
            )
            lines += outcome_lines(self.delivery, where, self.outbox)
        return "\n".join(lines)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_model(path: str | Path) -> tuple[Any, ModelInfo]:
    """``load_detector`` with its errors turned into input errors naming the file."""
    from fedids.model import ModelFileError, load_detector

    path = Path(path)
    try:
        detector = load_detector(path)
    except ModelFileError as exc:
        raise AlertsInputError(str(exc)) from exc
    return detector, ModelInfo(classification=detector.classification, sha256=_sha256(path)[:16])


def write_jsonl(path: str | Path, alerts: list[Alert]) -> Path:
    """One bundle per line, written to a temporary file and renamed (never half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            for a in alerts:
                f.write(a.payload + b"\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def build_alerts(
    detector: Any,
    info: ModelInfo,
    flows: pl.DataFrame,
    source: str,
    *,
    window: float,
    threshold: float | None,
    device: str,
    batch_size: int,
    now: datetime,
    tick: Callable[[], None] | None = None,
    burst_gap: float | None = None,
) -> tuple[list[Alert], int, float]:
    """Score ``flows`` and build validated alerts; returns (alerts, detections, seconds)."""
    t0 = time.perf_counter()
    x = feature_matrix(flows, detector.feature_names, source)
    probs = score(lambda b: detector.predict_proba(b, batch_size=len(b)), x, batch_size, tick)
    verdicts = decide(probs, normal_class_index(detector.class_names), threshold)
    seconds = time.perf_counter() - t0
    detections = detections_table(flows, verdicts, detector.class_names)
    groups = aggregate(detections, window, now.timestamp(), burst_gap)
    alerts = []
    for g in groups:
        alerts.append(build_alert(g, device, info, now))
        if tick is not None and len(alerts) % 100 == 0:
            tick()
    return alerts, detections.height, seconds


def _check_options(
    kafka: str | None, topic: str | None, window: float, threshold: float | None, batch: int
) -> None:
    if kafka and not topic:
        raise AlertsInputError("--kafka needs --topic")
    if not window > 0:
        raise AlertsInputError(f"--window must be positive seconds, got {window}")
    if threshold is not None and not 0.0 < threshold <= 1.0:
        raise AlertsInputError(f"--threshold must be in (0, 1], got {threshold}")
    if batch < 1:
        raise AlertsInputError(f"--batch-size must be at least 1, got {batch}")


def run_detect(
    model: str | Path | None,
    input: str | Path | pl.DataFrame | None,
    *,
    kafka: str | None = None,
    topic: str | None = None,
    out: str | Path | None = None,
    window: float = 60.0,
    burst_gap: float | None = None,
    threshold: float | None = None,
    device_name: str | None = None,
    outbox: str | Path | Outbox | None = None,
    kafka_settings: Mapping[str, str] | None = None,
    batch_size: int = 65536,
    delivery_timeout: float = 10.0,
    flush_only: bool = False,
    resend_in_doubt: bool = False,
    on_alert: Callable[[Alert], None] | None = None,
    on_delivery: DeliveryHook | None = None,
    now: datetime | None = None,
) -> DetectReport:
    """Detect attacks in a flow file (or DataFrame) and deliver STIX alerts.

    ``window``: alert ids are named after the window (seconds) in which a burst began;
    ``burst_gap``: the longest silence inside one burst (default 5 windows).
    ``kafka`` (bootstrap servers) + ``topic``: deliver through the durable outbox
    (``outbox``: a directory or an :class:`Outbox`; default :func:`default_outbox_dir`).
    ``kafka_settings``: any librdkafka properties (SASL, TLS, timeouts); they win over
    the defaults. ``flush_only``: only deliver what earlier runs left in the outbox.
    ``resend_in_doubt``: send alerts left in doubt without checking the topic first.
    ``on_alert`` sees each alert built; ``on_delivery`` each delivery report.
    Raises :class:`AlertsInputError` for unusable inputs; delivery problems are reported
    in the result (``pending`` > 0, ``exit_code`` 3), never raised.
    """
    t_start = time.perf_counter()
    now = now or datetime.now(UTC)
    device = device_name or socket.gethostname()
    report = DetectReport(kafka=kafka, topic=topic, flush_only=flush_only)
    if flush_only:
        if not kafka:
            raise AlertsInputError("--flush-only needs --kafka")
    else:
        _check_options(kafka, topic, window, threshold, batch_size)
        if burst_gap is not None:
            check_gap(burst_gap, max(1, round(window)))
        if model is None or input is None:
            raise AlertsInputError("a model and an input are required (or use --flush-only)")
        detector, info = load_model(model)
        if isinstance(input, pl.DataFrame):
            flows, source = input, "<DataFrame>"
        else:
            flows, source = read_flows(input, detector.feature_names), str(input)
        if flows.height == 0:
            raise AlertsInputError(f"{source}: no flow records (nothing to score)")
        report.flows = flows.height

    box, own_box = (None, False)
    if kafka:
        try:
            box, own_box = _open_outbox(outbox)
        except AlertsInputError as exc:
            if flush_only:
                raise
            report.outbox_error = str(exc)  # detection and --out go on without Kafka
        else:
            report.outbox = getattr(box, "directory", None)
            notice = getattr(box, "repair_report", None)
            if notice is not None:
                report.outbox_notice = notice.message()
                log.warning("%s", report.outbox_notice)
    session: DeliverySession | None = None
    try:
        if box is not None:
            session = DeliverySession(
                box,
                kafka,
                kafka_settings=kafka_settings,
                delivery_timeout=delivery_timeout,
                client_id=f"fedids-{device}",
                on_delivery=on_delivery,
                resend_in_doubt=resend_in_doubt,
            )
            session.start()

        if not flush_only:
            alerts, n_det, secs = build_alerts(
                detector,
                info,
                flows,
                source,
                window=window,
                threshold=threshold,
                device=device,
                batch_size=batch_size,
                now=now,
                tick=session.poll if session is not None else None,
                burst_gap=burst_gap,
            )
            report.alerts, report.detections, report.score_seconds = alerts, n_det, secs
            if out is not None:  # first: --out never depends on the outbox or the broker
                report.out_file = write_jsonl(out, alerts)
            if session is not None and alerts:
                # durable first: from here on, no crash can lose these alerts
                session.add(alerts, str(topic))
            if on_alert is not None:
                for a in alerts:
                    on_alert(a)

        if session is not None:
            report.delivery, session = session.finish(), None
    finally:
        if session is not None:  # interrupted: still collect the reports already due
            session.abort()
        if box is not None and own_box:
            box.close()
    report.total_seconds = time.perf_counter() - t_start
    return report


def _open_outbox(outbox: str | Path | Outbox | None) -> tuple[Outbox, bool]:
    """(outbox, whether we opened it and must close it)."""
    if _is_outbox(outbox):
        return outbox, False  # type: ignore[return-value]
    return Outbox(outbox or default_outbox_dir()), True  # type: ignore[arg-type]


def _is_outbox(obj: object) -> bool:
    """Duck typing, so tests can pass a stand-in outbox."""
    methods = ("add", "mark_sent", "mark_delivered", "iter_pending", "pending_for", "try_lock")
    return all(hasattr(obj, m) for m in methods)


def alert_line(alert: Alert) -> str:
    """The readable one-line form of an alert (same as ``fedids subscribe`` prints)."""
    return summarize(json.loads(alert.payload)).line()
