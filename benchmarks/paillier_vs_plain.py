"""Does Paillier change what the federation learns? Plain vs Paillier, same seeds, one CSV.

For each seed: one federated plain run and one Paillier run (in process, the product's
device and server code), identical in everything but the channel. Reported per seed: the
final macro-F1 of each and their difference, and the mean of the last ``--tail`` rounds
(the curves wobble from round to round). Summary: the mean and spread of the differences
against the spread of plain itself across seeds, so a difference can be read against the
run's own noise. Extra ``--variant NAME=OVERRIDE[,OVERRIDE]`` runs Paillier again with other
codec settings (e.g. ``--variant bits24=mode.value_bits=24``). ``--plain-nudge`` adds a
control: plain again, with every averaged weight moved by one float32 ulp (a seeded random
direction, about 6e-8 relative) after each aggregation. It measures how far two runs drift
apart from a difference far below any codec's, that is, the training's own sensitivity.

    python benchmarks/paillier_vs_plain.py \\
        --csv ../shared/data/ton_iot/Train_Test_IoT_GPS_Tracker.csv \\
        --classification multi --partition dirichlet --seeds 1,2,3 --json /tmp/pvp.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fedids.baseline import run_config

#: the instrument of ``--plain-nudge`` (a measurement, not a product setting)
NUDGE_SEED = 12345


@contextlib.contextmanager
def _nudged_plain_average(seed: int) -> Iterator[None]:
    """Plain FedAvg whose result moves by one float32 ulp per weight, up or down at random."""
    import numpy as np
    from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays

    from strategies.plain_fedavg import PlainFedAvg

    original = PlainFedAvg.weighted_average
    rng = np.random.default_rng(seed)

    def nudged(self: PlainFedAvg, weighted: list[tuple[list[Any], int]]) -> Any:
        out = []
        for a in parameters_to_ndarrays(original(self, weighted)):
            toward = np.where(rng.random(a.shape) < 0.5, np.inf, -np.inf).astype(np.float32)
            out.append(np.nextafter(a, toward).astype(np.float32))
        return ndarrays_to_parameters(out)

    PlainFedAvg.weighted_average = nudged  # type: ignore[method-assign]
    try:
        yield
    finally:
        PlainFedAvg.weighted_average = original  # type: ignore[method-assign]


def _run(overrides: list[str], run_path: Path) -> dict[str, Any]:
    from fedids.sim.inprocess import run_experiment

    doc = run_experiment(run_config(overrides), run_path)
    rounds = sorted(doc.get("rounds") or [], key=lambda r: r["round"])
    if not rounds:
        raise RuntimeError(f"{run_path}: no round completed")
    return {
        "final": rounds[-1]["macro_f1"],
        "per_round": [r["macro_f1"] for r in rounds],
        "clipped": sum(int(r.get("clipped_values") or 0) for r in rounds),
    }


def _tail(curve: list[float], n: int) -> float:
    return statistics.fmean(curve[-n:])


def _wobble(curve: list[float], n: int) -> float:
    """Mean |change| between consecutive rounds over the last ``n`` changes."""
    tail = curve[-n - 1 :]
    return statistics.fmean(abs(b - a) for a, b in zip(tail[:-1], tail[1:], strict=True))


def _spread(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", type=Path, required=True)
    ap.add_argument("--dataset", default="ton_iot", help="dataset preset (conf/dataset)")
    ap.add_argument("--classification", default="multi")
    ap.add_argument("--partition", default="dirichlet", choices=["iid", "dirichlet"])
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--local-epochs", type=int, default=2)
    ap.add_argument("--devices", type=int, default=2)
    ap.add_argument("--tail", type=int, default=3, help="rounds averaged at the end")
    ap.add_argument("--variant", action="append", default=[], help="NAME=OVERRIDE[,OVERRIDE]")
    ap.add_argument(
        "--plain-nudge",
        action="store_true",
        help="control: plain again, each average moved by one float32 ulp (training sensitivity)",
    )
    ap.add_argument("--json", type=Path)
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    args = ap.parse_args(argv)
    if not args.csv.is_file():
        print(f"paillier_vs_plain: no such CSV: {args.csv}", file=sys.stderr)
        return 2
    seeds = [int(s) for s in args.seeds.split(",") if s]
    variants: dict[str, list[str]] = {"paillier": ["mode=paillier"]}
    for v in args.variant:
        name, _, over = v.partition("=")
        if not name or not over:
            print(f"paillier_vs_plain: --variant wants NAME=OVERRIDE, got {v!r}", file=sys.stderr)
            return 2
        variants[name] = ["mode=paillier", *over.split(",")]
    if args.plain_nudge:
        variants["plain_nudged"] = ["mode=plain"]
    common = [
        f"dataset={args.dataset}", f"dataset.path={args.csv.resolve()}",
        f"classification={args.classification}", f"num_server_rounds={args.rounds}",
        f"local_epochs={args.local_epochs}", f"partition={args.partition}",
        f"federation.num_partitions={args.devices}", f"federation.min_fit_clients={args.devices}",
        f"federation.min_evaluate_clients={args.devices}",
        f"federation.min_available_clients={args.devices}", *args.overrides,
    ]  # fmt: skip
    if args.partition == "dirichlet":
        common.append(f"partition.alpha={args.alpha}")
    per_seed: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="fedids-pvp-") as tmp:
        for seed in seeds:
            row: dict[str, Any] = {"seed": seed}
            row["plain"] = _run([*common, f"seed={seed}", "mode=plain"], Path(tmp, f"{seed}-p"))
            for name, extra in variants.items():
                over = [*common, f"seed={seed}", *extra]
                nudge = _nudged_plain_average(NUDGE_SEED + seed)
                with nudge if name == "plain_nudged" else contextlib.nullcontext():
                    row[name] = _run(over, Path(tmp, f"{seed}-{name}"))
            line = f"seed {seed}: plain {row['plain']['final']:.4f}"
            for name in variants:
                d = row[name]["final"] - row["plain"]["final"]
                line += f" | {name} {row[name]['final']:.4f} ({d:+.4f})"
            print(line, flush=True)
            per_seed.append(row)
    summary: dict[str, Any] = {
        "plain_final_spread_across_seeds": _spread([r["plain"]["final"] for r in per_seed]),
        "plain_round_to_round_wobble": statistics.fmean(
            _wobble(r["plain"]["per_round"], args.tail) for r in per_seed
        ),
    }
    for name in variants:
        finals = [r[name]["final"] - r["plain"]["final"] for r in per_seed]
        tails = [
            _tail(r[name]["per_round"], args.tail) - _tail(r["plain"]["per_round"], args.tail)
            for r in per_seed
        ]
        summary[name] = {
            "final_differences": finals,
            "mean_final_difference": statistics.fmean(finals),
            "max_abs_final_difference": max(abs(d) for d in finals),
            "tail_differences": tails,
            "mean_tail_difference": statistics.fmean(tails),
            "within_0.005": sum(abs(d) <= 0.005 for d in finals),
        }
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "setup": vars(args) | {"csv": str(args.csv), "json": None},
                    "seeds": per_seed,
                    "summary": summary,
                },
                indent=1,
                default=str,
            )  # fmt: skip
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
