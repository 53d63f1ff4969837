"""``fedids subscribe``: read STIX 2.1 alerts from Kafka, validate and print them."""

from __future__ import annotations

import argparse
import signal
import sys
import threading


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "subscribe",
        help="read, validate and print STIX 2.1 alerts from a Kafka topic",
        description=(
            "Join a consumer group on TOPIC, validate each message as a STIX 2.1 bundle, "
            "print one line per alert and optionally append the bundles to a JSONL file. "
            "Malformed messages are logged (partition, offset) and skipped. Offsets are "
            "committed only after messages were handled."
        ),
    )
    p.add_argument("--kafka", metavar="HOST:PORT", help="bootstrap servers (comma-separated)")
    p.add_argument("--topic", required=True)
    p.add_argument("--group", default="fedids-subscribe", help="consumer group [fedids-subscribe]")
    p.add_argument("--max-messages", type=int, metavar="N", help="stop after N messages")
    p.add_argument("--timeout", type=float, metavar="S", help="stop after S seconds in total")
    p.add_argument(
        "--idle-timeout",
        type=float,
        metavar="S",
        help="stop when no message came for S seconds (once partitions are assigned)",
    )
    p.add_argument("--out", metavar="FILE.jsonl", help="append valid bundles, one per line")
    p.add_argument(
        "--from-beginning",
        action="store_true",
        help="a new group starts at the oldest message (default: only new messages)",
    )
    p.add_argument(
        "-X",
        dest="kafka_settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="librdkafka setting, repeatable (e.g. -X security.protocol=SASL_SSL)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fedids.alerts.errors import AlertsInputError
    from fedids.alerts.kafkaconf import parse_settings
    from fedids.alerts.subscriber import consume

    stop = threading.Event()
    # stop cleanly (commit what was handled, leave the group) on Ctrl-C or SIGTERM
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        report = consume(
            args.kafka,
            args.topic,
            group=args.group,
            max_messages=args.max_messages,
            timeout=args.timeout,
            idle_timeout=args.idle_timeout,
            from_beginning=args.from_beginning,
            kafka_settings=parse_settings(args.kafka_settings),
            out=args.out,
            on_alert=lambda s: print(s.line(), flush=True),
            stop=stop,
            keep_summaries=False,
        )
    except AlertsInputError as exc:
        print(f"fedids subscribe: error: {exc}", file=sys.stderr)
        return 2
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(
        f"received {report.messages} message(s): {report.alerts} alert(s), "
        f"{report.malformed} malformed (skipped)",
        flush=True,
    )
    return 0
