"""``fedids detect``: score flows with a model.pt and publish STIX 2.1 alerts.

Exit status: 0 done (all alerts delivered, or no Kafka asked), 2 unusable input
(model, flow file, option, an outbox directory that cannot be used), 3 alerts wait in the
outbox (broker unreachable, a delivery failed, or alerts in doubt were held back; the next
run delivers them).
"""

from __future__ import annotations

import argparse
import logging
import sys

log = logging.getLogger("fedids.detect")

#: alerts printed one per line before the rest are only counted
SHOW_ALERTS = 50


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "detect",
        help="score flows with a model and publish STIX 2.1 alerts (Kafka and/or JSONL)",
        description=(
            "Score flow records with a trained model.pt, group detections per (attack class, "
            "source, destination, burst) and emit one STIX 2.1 bundle per group. With "
            "--kafka, alerts are first stored in a durable outbox and removed only once the "
            "broker confirmed them; alerts left by earlier runs are sent first."
        ),
    )
    p.add_argument("--model", help="model.pt written by a fedids run")
    p.add_argument("--input", metavar="CSV", help="flow records (WUSTL-IIoT schema or similar)")
    p.add_argument("--kafka", metavar="HOST:PORT", help="bootstrap servers (comma-separated)")
    p.add_argument("--topic", help="Kafka topic for alerts")
    p.add_argument("--out", metavar="FILE.jsonl", help="also write the alerts, one per line")
    p.add_argument(
        "--window",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="time grid alerts are named on (and, streaming, closed at) [60]",
    )
    p.add_argument(
        "--burst-gap",
        type=float,
        metavar="SECONDS",
        help="a burst of detections (one alert) ends after this much silence [5 windows]",
    )
    p.add_argument(
        "--threshold",
        type=float,
        metavar="P",
        help="flag a flow when 1 - p(normal) >= P (default: when the most likely class "
        "is not normal)",
    )
    p.add_argument("--device-name", metavar="NAME", help="detecting device [host name]")
    p.add_argument(
        "--outbox", metavar="DIR", help="durable outbox [$FEDIDS_OUTBOX or ~/.fedids/outbox]"
    )
    p.add_argument(
        "-X",
        dest="kafka_settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="librdkafka setting, repeatable (e.g. -X security.protocol=SASL_SSL)",
    )
    p.add_argument(
        "--batch-size", type=int, default=65536, metavar="N", help="flows scored per batch"
    )
    p.add_argument(
        "--delivery-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="give up on a delivery after this long (message.timeout.ms) [10]",
    )
    p.add_argument(
        "--flush-only",
        action="store_true",
        help="only deliver alerts waiting in the outbox (no --model/--input needed)",
    )
    p.add_argument(
        "--resend-in-doubt",
        action="store_true",
        help="send alerts left in doubt by an interrupted run without first checking the "
        "topic for them (at-least-once; only when the topic cannot be read)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="do not print one line per alert")
    stream = p.add_argument_group(
        "streaming input", "read flows (JSON objects) from a Kafka topic instead of --input"
    )
    stream.add_argument("--input-topic", metavar="TOPIC", help="Kafka topic holding flows")
    stream.add_argument("--group", help="consumer group [fedids-detect-DEVICE]")
    stream.add_argument(
        "--from-beginning", action="store_true", help="a new group starts at the oldest flow"
    )
    stream.add_argument(
        "--grace",
        type=float,
        metavar="SECONDS",
        help="wait this long for late flows before closing a window [--window]",
    )
    stream.add_argument("--max-flows", type=int, metavar="N", help="stop after N flows")
    stream.add_argument("--timeout", type=float, metavar="S", help="stop after S seconds")
    stream.add_argument(
        "--idle-timeout", type=float, metavar="S", help="stop when no flow came for S seconds"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fedids.alerts.detect import alert_line, run_detect
    from fedids.alerts.errors import AlertsInputError
    from fedids.alerts.kafkaconf import parse_settings

    if args.input and args.input_topic:
        print("fedids detect: error: use --input or --input-topic, not both", file=sys.stderr)
        return 2
    if args.input_topic:
        return _run_stream(args)
    if not args.flush_only and (not args.model or not args.input):
        print("fedids detect: error: --model and --input are required", file=sys.stderr)
        return 2
    shown = 0

    def show(alert: object) -> None:
        nonlocal shown
        shown += 1
        if not args.quiet and shown <= SHOW_ALERTS:
            print(alert_line(alert), flush=True)  # type: ignore[arg-type]

    try:
        report = run_detect(
            args.model,
            args.input,
            kafka=args.kafka,
            topic=args.topic,
            out=args.out,
            window=args.window,
            burst_gap=args.burst_gap,
            threshold=args.threshold,
            device_name=args.device_name,
            outbox=args.outbox,
            kafka_settings=parse_settings(args.kafka_settings),
            batch_size=args.batch_size,
            delivery_timeout=args.delivery_timeout,
            flush_only=args.flush_only,
            resend_in_doubt=args.resend_in_doubt,
            on_alert=show,
        )
    except AlertsInputError as exc:
        print(f"fedids detect: error: {exc}", file=sys.stderr)
        return 2
    if shown > SHOW_ALERTS and not args.quiet:
        print(f"... and {shown - SHOW_ALERTS} more alert(s)")
    print(report.summary(), flush=True)
    return report.exit_code


def _run_stream(args: argparse.Namespace) -> int:
    """``--input-topic``: detect continuously on flows read from Kafka (Ctrl-C stops)."""
    import signal
    import threading

    from fedids.alerts.detect import alert_line
    from fedids.alerts.errors import AlertsInputError
    from fedids.alerts.kafkaconf import parse_settings
    from fedids.alerts.stream import run_detect_stream

    if not args.model or not args.kafka or not args.topic:
        print(
            "fedids detect: error: --input-topic needs --model, --kafka and --topic",
            file=sys.stderr,
        )
        return 2
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        report = run_detect_stream(
            args.model,
            args.input_topic,
            kafka=args.kafka,
            topic=args.topic,
            group=args.group,
            window=args.window,
            grace=args.grace,
            burst_gap=args.burst_gap,
            threshold=args.threshold,
            device_name=args.device_name,
            outbox=args.outbox,
            kafka_settings=parse_settings(args.kafka_settings),
            batch_size=min(args.batch_size, 10_000),
            delivery_timeout=args.delivery_timeout,
            from_beginning=args.from_beginning,
            max_flows=args.max_flows,
            timeout=args.timeout,
            idle_timeout=args.idle_timeout,
            on_alert=None if args.quiet else lambda a: print(alert_line(a), flush=True),
            stop=stop,
        )
    except AlertsInputError as exc:
        print(f"fedids detect: error: {exc}", file=sys.stderr)
        return 2
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(report.summary(), flush=True)
    return report.exit_code
