"""``fedids bench``: round time, crypto time and upload size of packed Paillier vs plain
FedAvg and vs per-value python-paillier, on the same data (see :mod:`fedids.bench`).

Example::

    fedids bench --json bench.json --rows 60000 --clients 2 --key-bits 2048
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from fedids.crypto.codec import PRODUCTION_KEY_BITS


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench",
        help="measure packed Paillier against plain rounds and per-value Paillier",
        description=(
            "Run a plain round, a packed-Paillier round (with and without precompute) and "
            "per-value python-paillier on the same synthetic data in this process; write all "
            "figures to --json and print a table."
        ),
    )
    p.add_argument("--json", required=True, help="write the results here")
    p.add_argument("--rows", type=int, default=None, help="dataset rows (default: config's)")
    p.add_argument("--clients", type=int, default=2, help="simulated devices (default 2)")
    p.add_argument("--key-bits", type=int, default=2048, choices=PRODUCTION_KEY_BITS)
    p.add_argument(
        "--naive-sample",
        type=int,
        default=200,
        help="parameters per client timed with per-value Paillier, then extrapolated",
    )
    p.add_argument("--workers", type=int, default=2, help="crypto workers per device")
    p.add_argument("--rounds", type=int, default=3, help="measured rounds per mode (+1 warm-up)")
    p.add_argument("--seed", type=int, default=42)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fedids.bench import BenchSettings, format_table, run_bench

    if args.clients < 1 or args.naive_sample < 1 or args.rounds < 1 or args.workers < 1:
        print(
            "fedids bench: --clients, --naive-sample, --rounds, --workers must be >= 1",
            file=sys.stderr,
        )
        return 2
    settings = BenchSettings(
        rows=args.rows,
        clients=args.clients,
        key_bits=args.key_bits,
        naive_sample=args.naive_sample,
        workers=args.workers,
        rounds=args.rounds,
        seed=args.seed,
    )
    # per-round INFO lines of the strategy would drown the table; warnings still show
    logging.getLogger("flwr").setLevel(logging.WARNING)
    result = run_bench(settings, say=lambda msg: print(msg, file=sys.stderr, flush=True))
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=float) + "\n")
    print(format_table(result))
    print(f"\nresults: {path}")
    return 0
