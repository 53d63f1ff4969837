"""``fedids report``: plot one or more runs (overlaid) to a PNG or a self-contained HTML page.

Example::

    fedids report runs/plain runs/paillier --out compare.html
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report",
        help="plot runs: macro-F1, FPR, per-class recall, confusion matrix, time, bytes",
        description=(
            "Plot one or more runs from their metrics.json, overlaid and labelled by mode, "
            "partition and aggregation: macro-F1 beside the majority-class baseline and "
            "false-positive rate per round, per-class recall and confusion matrix of the last "
            "round, time split per round and bytes sent up per device. --out FILE.png writes "
            "the figure; --out FILE.html a self-contained page with the figure and a summary "
            "table."
        ),
    )
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR",
                   help="run directory (holding metrics.json) or a metrics.json file")
    p.add_argument("--out", type=Path, required=True, help="FILE.png or FILE.html")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fedids.report import MatplotlibMissing, ReportError, load_run, write_report
    from fedids.report.runs import format_summary, summary_rows

    runs = []
    for path in args.runs:
        try:
            loaded = load_run(path)
        except ReportError as exc:
            print(f"fedids report: skipped: {exc}", file=sys.stderr)
            continue
        if not loaded.rounds:
            print(f"fedids report: skipped: {path}: no completed round in metrics.json",
                  file=sys.stderr)
            continue
        runs.append(loaded)
    if not runs:
        print("fedids report: no run to plot", file=sys.stderr)
        return 1
    try:
        out = write_report(runs, args.out)
    except (ReportError, MatplotlibMissing) as exc:
        print(f"fedids report: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ReportError) else 1
    except OSError as exc:
        print(f"fedids report: cannot write {args.out}: {exc}", file=sys.stderr)
        return 1
    print(format_summary(summary_rows(runs)))
    print(f"\nreport: {out}")
    return 0
