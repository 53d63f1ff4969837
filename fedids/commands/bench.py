"""``fedids bench``: packed Paillier measured against its baselines in one run: plain rounds,
per-value python-paillier, and (``--peers``) TenSEAL CKKS with NVFlare's settings
(see :mod:`fedids.bench`).

Example::

    fedids bench --json bench.json --peers
    fedids bench --json quick.json --skip-rounds --peer-params 5125,100000
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from fedids.crypto.codec import PRODUCTION_KEY_BITS


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers: {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("sizes must be positive integers")
    return sizes


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench",
        help="measure packed Paillier against plain rounds, per-value Paillier and CKKS",
        description=(
            "Run plain and packed-Paillier rounds with the product's client, packed Paillier "
            "(protocol v2) against per-value python-paillier, and, with TenSEAL installed, "
            "against CKKS with NVFlare's settings, on the same data in this process; write "
            "all figures to --json and print a table."
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
    p.add_argument("--rounds", type=int, default=7, help="measured rounds per mode (+1 warm-up)")
    p.add_argument("--seed", type=int, default=42)
    peers = p.add_mutually_exclusive_group()
    peers.add_argument(
        "--peers",
        dest="peers",
        action="store_true",
        default=None,
        help="compare with TenSEAL CKKS (NVFlare settings); fails if TenSEAL is missing "
        "(default: compare when it is installed)",
    )
    peers.add_argument("--no-peers", dest="peers", action="store_false")
    p.add_argument(
        "--peer-params",
        type=_sizes,
        default=(5125,),
        help="model sizes for the CKKS comparison, e.g. 5125,100000 (default 5125)",
    )
    p.add_argument("--peer-clients", type=int, default=10, help="devices in the CKKS comparison")
    p.add_argument("--peer-repeats", type=int, default=5, help="interleaved repetitions")
    p.add_argument(
        "--skip-rounds", action="store_true", help="crypto figures only (no training rounds)"
    )
    p.add_argument(
        "--k100-values",
        type=int,
        default=5125,
        help="model size of the 100-device FedAvg error figure (default 5125)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fedids.bench import BenchSettings, format_table, run_bench
    from fedids.bench.peers import PeersUnavailable

    counts = (
        args.clients,
        args.naive_sample,
        args.rounds,
        args.workers,
        args.peer_clients,
        args.peer_repeats,
    )
    if min(counts) < 1:
        print(
            "fedids bench: --clients, --naive-sample, --rounds, --workers, --peer-clients, "
            "--peer-repeats, --k100-values must be >= 1",
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
        peers=args.peers,
        peer_clients=args.peer_clients,
        peer_params=args.peer_params,
        peer_repeats=args.peer_repeats,
        skip_rounds=args.skip_rounds,
        k100_values=args.k100_values,
    )
    # per-round INFO lines of the strategy would drown the table; warnings still show
    flwr_logger = logging.getLogger("flwr")
    level = flwr_logger.level
    flwr_logger.setLevel(logging.WARNING)
    try:
        result = run_bench(settings, say=lambda msg: print(msg, file=sys.stderr, flush=True))
    except PeersUnavailable as exc:
        print(f"fedids bench: {exc}", file=sys.stderr)
        return 2
    finally:
        flwr_logger.setLevel(level)  # callers in the same process keep their log lines
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=float) + "\n")
    print(format_table(result))
    print(f"\nresults: {path}")
    return 0
