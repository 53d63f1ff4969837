"""``fedids outbox check``: inspect an alert outbox; repair and salvage a corrupt one.

Exit status: 0 the outbox is sound, 1 it was corrupt (moved aside, readable rows
salvaged into a fresh one), 2 unusable input (no such directory, unreadable file).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "outbox",
        help="check the durable alert outbox; repair and salvage a corrupt one",
        description=(
            "fedids detect stores every alert in an outbox (SQLite) before sending it. "
            "'check' verifies the file page by page and counts waiting, in-doubt and "
            "delivered alerts. A corrupt file is moved aside (its new name is printed), a "
            "fresh outbox is created and every readable row is copied into it."
        ),
    )
    sub = p.add_subparsers(dest="outbox_command", metavar="ACTION", required=True)
    check = sub.add_parser("check", help="verify, count, repair and salvage")
    check.add_argument(
        "directory",
        nargs="?",
        metavar="DIR",
        help="outbox directory [$FEDIDS_OUTBOX or ~/.fedids/outbox]",
    )
    check.add_argument(
        "--salvage",
        metavar="FILE",
        action="append",
        default=[],
        help="also copy the readable rows of this (moved-aside) outbox file into DIR; repeatable",
    )
    check.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fedids.alerts.errors import AlertsInputError
    from fedids.alerts.outbox import DB_NAME, Outbox, default_outbox_dir

    directory = Path(args.directory).expanduser() if args.directory else default_outbox_dir()
    if not directory.is_dir():
        print(f"fedids outbox: error: {directory} is not a directory", file=sys.stderr)
        return 2
    db = directory / DB_NAME
    if not db.is_file():
        print(f"fedids outbox: error: no outbox in {directory} (no {DB_NAME})", file=sys.stderr)
        return 2
    sources = [Path(s).expanduser() for s in args.salvage]
    for s in sources:
        if not s.is_file():
            print(f"fedids outbox: error: {s} is not a file", file=sys.stderr)
            return 2
    try:
        box = Outbox(directory)
    except AlertsInputError as exc:
        print(f"fedids outbox: error: {exc}", file=sys.stderr)
        return 2
    with box:
        status = 0
        if box.repair_report is not None:
            print(box.repair_report.message())
            status = 1
        else:
            print(f"outbox {db}: ok (every page checked)")
        for s in sources:
            print(box.salvage_from(s).line())
        doubt = len(box.in_doubt())
        print(
            f"{box.count()} alert(s) waiting ({doubt} in doubt: handed to a producer, "
            f"delivery not confirmed), {box.delivered_count()} delivered (ledger)"
        )
        for old in sorted(directory.glob(DB_NAME + ".corrupt-*")):
            if not old.name.endswith(("-wal", "-shm")):
                print(f"moved-aside copy: {old} (salvage again with --salvage {old})")
    return status
