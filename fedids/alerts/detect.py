"""``fedids detect``: score flows, build STIX alerts, store them durably, deliver to Kafka.

Order of work, and why:

1. load the model and read the flows first, so a bad file fails fast (exit 2) without
   touching Kafka;
2. hand the alerts that earlier runs left in the outbox to the producer (they are sent
   in the background while this run scores);
3. score in batches, aggregate, build and validate one STIX bundle per alert;
4. write the alerts to ``--out`` (if asked) and commit them to the outbox (fsync);
5. produce them; each leaves the outbox when its delivery report succeeds; wait for
   reports at most ``delivery_timeout`` (+2 s), then report delivered / waiting.

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
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from fedids.alerts.aggregate import aggregate
from fedids.alerts.errors import AlertsInputError
from fedids.alerts.flows import (
    decide,
    detections_table,
    feature_matrix,
    normal_class_index,
    read_flows,
    score,
)
from fedids.alerts.kafkaconf import producer_config
from fedids.alerts.outbox import NewAlert, Outbox, PendingAlert, default_outbox_dir
from fedids.alerts.producer import AlertPublisher, DeliveryHook
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
    delivered: int = 0  # this run's and earlier runs' alerts delivered now
    failed: int = 0  # delivery attempts that failed (those alerts stay in the outbox)
    pending: int = 0  # alerts waiting in the outbox at exit
    outbox: Path | None = None
    out_file: Path | None = None
    errors: dict[str, int] = field(default_factory=dict)
    delivered_ids: list[str] = field(default_factory=list)
    score_seconds: float = 0.0
    total_seconds: float = 0.0
    flush_only: bool = False

    @property
    def alert_ids(self) -> list[str]:
        return [a.alert_id for a in self.alerts]

    @property
    def exit_code(self) -> int:
        return EXIT_PENDING if self.kafka and self.pending else 0

    def summary(self) -> str:
        lines = []
        if not self.flush_only:
            lines.append(
                f"scored {self.flows} flow(s) in {self.score_seconds:.2f} s: "
                f"{self.detections} detection(s) -> {len(self.alerts)} alert(s)"
            )
        if self.out_file:
            lines.append(f"wrote {len(self.alerts)} alert(s) to {self.out_file}")
        if self.kafka:
            where = (
                f"{self.topic} on {self.kafka}" if self.topic else f"their topics on {self.kafka}"
            )
            lines.append(
                f"delivered {self.delivered} alert(s) to {where}; "
                f"{self.pending} waiting in the outbox {self.outbox}"
            )
            if self.errors:
                why = ", ".join(f"{k} x{v}" for k, v in sorted(self.errors.items()))
                lines.append(f"delivery failures: {why}")
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
) -> tuple[list[Alert], int, float]:
    """Score ``flows`` and build validated alerts; returns (alerts, detections, seconds)."""
    t0 = time.perf_counter()
    x = feature_matrix(flows, detector.feature_names, source)
    probs = score(lambda b: detector.predict_proba(b, batch_size=len(b)), x, batch_size, tick)
    verdicts = decide(probs, normal_class_index(detector.class_names), threshold)
    seconds = time.perf_counter() - t0
    detections = detections_table(flows, verdicts, detector.class_names)
    groups = aggregate(detections, window, now.timestamp())
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
    threshold: float | None = None,
    device_name: str | None = None,
    outbox: str | Path | Outbox | None = None,
    kafka_settings: Mapping[str, str] | None = None,
    batch_size: int = 65536,
    delivery_timeout: float = 10.0,
    flush_only: bool = False,
    on_alert: Callable[[Alert], None] | None = None,
    on_delivery: DeliveryHook | None = None,
    now: datetime | None = None,
) -> DetectReport:
    """Detect attacks in a flow file (or DataFrame) and deliver STIX alerts.

    ``kafka`` (bootstrap servers) + ``topic``: deliver through the durable outbox
    (``outbox``: a directory or an :class:`Outbox`; default :func:`default_outbox_dir`).
    ``kafka_settings``: any librdkafka properties (SASL, TLS, timeouts); they win over
    the defaults. ``flush_only``: only deliver what earlier runs left in the outbox.
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
        if model is None or input is None:
            raise AlertsInputError("a model and an input are required (or use --flush-only)")
        detector, info = load_model(model)
        if isinstance(input, pl.DataFrame):
            flows, source = input, "<DataFrame>"
        else:
            flows, source = read_flows(input, detector.feature_names), str(input)
        report.flows = flows.height

    box, own_box = _open_outbox(outbox) if kafka else (None, False)
    publisher: AlertPublisher | None = None
    submitted: set[int] = set()
    try:
        if box is not None:
            report.outbox = getattr(box, "directory", None)
            conf = producer_config(kafka, delivery_timeout, kafka_settings, f"fedids-{device}")
            publisher = AlertPublisher(conf, box, delivery_timeout, on_delivery=on_delivery)
            if box.try_lock():
                backlog = box.count()
                if backlog:
                    log.info("sending %d alert(s) left by earlier runs", backlog)
                publisher.submit(_recording(box.iter_pending(), submitted))
            else:
                log.warning("another fedids process is sending this outbox's backlog")

        if not flush_only:
            tick = publisher.poll if publisher is not None else None
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
                tick=tick,
            )
            report.alerts, report.detections, report.score_seconds = alerts, n_det, secs
            if box is not None and publisher is not None and alerts:
                # durable first: from here on, no crash can lose these alerts
                box.add(NewAlert(a.alert_id, str(topic), a.payload, a.digest) for a in alerts)
                fresh = box.pending_for(a.alert_id for a in alerts)
                publisher.submit(p for p in fresh if p.seq not in submitted)
            if out is not None:
                report.out_file = write_jsonl(out, alerts)
            if on_alert is not None:
                for a in alerts:
                    on_alert(a)

        if publisher is not None and box is not None:
            result, publisher = publisher.finish(), None
            report.delivered = result.delivered
            report.failed = result.failed
            report.errors = dict(result.errors)
            report.delivered_ids = list(result.delivered_ids)
            report.pending = box.count()
    finally:
        if publisher is not None:  # interrupted: still collect the reports already due
            try:
                publisher.finish()
            except Exception:  # never hide the original error
                log.exception("could not finish the Kafka producer")
        if box is not None and own_box:
            box.close()
    report.total_seconds = time.perf_counter() - t_start
    return report


def _recording(items: Iterable[PendingAlert], seqs: set[int]) -> Iterator[PendingAlert]:
    """Pass alerts through, noting which versions were handed to the producer."""
    for item in items:
        seqs.add(item.seq)
        yield item


def _open_outbox(outbox: str | Path | Outbox | None) -> tuple[Outbox, bool]:
    """(outbox, whether we opened it and must close it)."""
    if _is_outbox(outbox):
        return outbox, False  # type: ignore[return-value]
    return Outbox(outbox or default_outbox_dir()), True  # type: ignore[arg-type]


def _is_outbox(obj: object) -> bool:
    """Duck typing, so tests can pass a stand-in outbox."""
    methods = ("add", "remove", "iter_pending", "pending_for", "count", "try_lock")
    return all(hasattr(obj, m) for m in methods)


def alert_line(alert: Alert) -> str:
    """The readable one-line form of an alert (same as ``fedids subscribe`` prints)."""
    return summarize(json.loads(alert.payload)).line()
