"""Stragglers: synchronous vs buffered aggregation with one device several times slower.

Same data, seed, model and mode (Paillier by default, 2048-bit keys) for both runs; the
only difference is ``aggregation=sync|buffered``. Devices run in processes of their own
(:mod:`fedids.sim.device_processes`), so they really work side by side; the slow device is
slowed on the device side (``aggregation.slowdown``: after each fit it sleeps
``(factor - 1)`` x what the fit took), so its slowness is wall-clock time the server sees,
and mostly sleep: on a shared machine the slowdown dominates the compute noise.

Both runs aggregate as many device updates. A sync round holds every device's update; a
buffered version holds ``devices - 0.5`` on average here (with ``max_staleness: 1`` the slow
device is in every second version), so the buffered run makes
``round(rounds x devices / (devices - 0.5))`` versions (``--buffered-rounds`` overrides).
In a buffered run a fast device whose update would wait for the slow one trains more epochs
meanwhile (``aggregation.idle_epochs_factor``, default 2; the simulated slowdown pads them
in proportion); ``device_epochs`` says how much training each run aggregated in all.
Training is set to converge within the run (``local_epochs=2 train.lr=0.01``:
``TRAINING``), so that final figures are comparable.

Simulated speeds: every device's training is padded by sleep to ``--base-seconds`` (3 s;
the slow device: ``factor x`` that), or ``factor x`` its real training time if longer, so the
devices' speeds do not follow the load of a shared machine
(``aggregation.slowdown_base_seconds``).

Reported per run: the curve ``[[seconds, macro_f1, slow device contributed], ...]``
(seconds from the end of the statistics phase, which is the same protocol in both modes;
``setup_seconds`` says how long it took), the final macro-F1, the time to reach the target
(the sync run's final macro-F1 minus 0.01), how many aggregations there were and how many
included the slow device.
Macro-F1 is over the union of the devices' validation splits in both modes.

    python benchmarks/stragglers.py --json /tmp/stragglers.json [--mode plain] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
#: the real telemetry, where the project's data folder sits beside a clone (or two levels up)
DEFAULT_DATA = [
    base / "shared/data/ton_iot/Train_Test_IoT_GPS_Tracker.csv" for base in REPO.parents[:2]
]
#: enough local work per fit that the slowdown (a multiple of training time) dominates the
#: per-message costs, and a learning rate at which the model converges within the run
TRAINING = "local_epochs=2 train.lr=0.01"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", type=Path, required=True, help="write the results here")
    p.add_argument("--mode", choices=("paillier", "plain"), default="paillier")
    p.add_argument("--devices", type=int, default=4)
    p.add_argument("--slow-partition", type=int, default=1)
    p.add_argument("--slow-factor", type=float, default=4.0)
    p.add_argument(
        "--base-seconds",
        type=float,
        default=3.0,
        help="simulated training time of a fast device per fit (slowdown_base_seconds; 0: off)",
    )
    p.add_argument("--rounds", type=int, default=16, help="aggregations of each run")
    p.add_argument(
        "--buffered-rounds",
        type=int,
        default=None,
        help="buffered versions (default: as many device updates as the sync run)",
    )
    p.add_argument("--data", type=Path, default=None, help="a TON_IoT telemetry CSV")
    p.add_argument("--classification", choices=("multi", "binary"), default="multi")
    p.add_argument("--repeats", type=int, default=1, help="sync/buffered pairs, interleaved")
    p.add_argument("--overrides", default="", help="extra Hydra overrides for both runs")
    p.add_argument(
        "--idle-epochs-factor",
        type=int,
        default=None,
        help="buffered runs only: aggregation.idle_epochs_factor (1: no filling; default: conf)",
    )
    p.add_argument("--png", type=Path, default=None, help="plot (fedids.report.plot_stragglers)")
    p.add_argument("--workdir", type=Path, default=None, help="run folders (default: a temp dir)")
    return p.parse_args(argv)


def data_overrides(args: argparse.Namespace) -> tuple[str, str]:
    """Hydra overrides for the data and a label saying what it is."""
    path = args.data or next((p for p in DEFAULT_DATA if p.is_file()), None)
    if path is None:
        return "", "synthetic (dataset=synthetic): no real data folder on this machine"
    return f"dataset=ton_iot dataset.path={path}", f"TON_IoT {path.name} (real telemetry)"


def make_cfg(args: argparse.Namespace, aggregation: str, rounds: int, data: str) -> dict:
    from fedids.config import compose_config, to_plain

    overrides = " ".join(
        [
            data,
            f"federation.num_partitions={args.devices}",
            f"aggregation.slowdown={{{args.slow_partition}:{args.slow_factor}}}",
            f"aggregation.slowdown_base_seconds={args.base_seconds}",
            "mode.workers=1" if args.mode == "paillier" else "",
            TRAINING,
            args.overrides,
            (
                f"aggregation.idle_epochs_factor={args.idle_epochs_factor}"
                if aggregation == "buffered" and args.idle_epochs_factor is not None
                else ""
            ),
        ]
    )
    cfg = to_plain(
        compose_config(
            {
                "mode": args.mode,
                "aggregation": aggregation,
                "classification": args.classification,
                "num-server-rounds": rounds,
                "hydra-overrides": overrides.strip(),
            }
        )
    )
    if args.mode == "paillier":
        # the same codec in both runs: room for buffered staleness weights up to 4
        cfg["mode"]["max_multiplier"] = max(4, int(cfg["aggregation"].get("max_multiplier", 1)))
    return cfg


def slow_device_id(args: argparse.Namespace) -> str:
    return str(1000 + args.slow_partition)  # fedids.sim.device_processes node ids


def device_epochs(rounds: list[dict[str, Any]], local_epochs: int) -> int:
    """Local epochs in every aggregated update: a buffered record says each contributor's
    (``local_epochs``, more when a fast device filled a wait), a sync round has
    ``fit_clients`` updates of ``local_epochs``."""
    total = 0
    for r in rounds:
        if "contributors" in r:
            total += sum(int(c.get("local_epochs") or local_epochs) for c in r["contributors"])
        else:
            total += int(r["fit_clients"]) * local_epochs
    return total


def summarize(
    doc: dict[str, Any], slow: str, devices: int, wall: float, local_epochs: int = 2
) -> dict[str, Any]:
    """Figures of one run from its metrics.json."""
    setup = float(doc.get("setup_seconds", 0.0))
    rounds = doc["rounds"]
    with_slow = []
    for r in rounds:
        if "contributors" in r:
            with_slow.append(any(c["device"] == slow for c in r["contributors"]))
        else:  # a synchronous round includes every device that did not fail
            with_slow.append(int(r["fit_clients"]) == devices and not r["device_errors"])
    curve = [
        [round(float(r["elapsed_seconds"]) - setup, 3), float(r["macro_f1"]), s]
        for r, s in zip(rounds, with_slow, strict=True)
    ]
    first = with_slow.index(True) if True in with_slow else None
    after = with_slow[first + 1 :] if first is not None else []
    stale = [c["staleness"] for r in rounds for c in r.get("contributors", [])]
    return {
        "status": doc["status"],
        "aggregation": doc.get("aggregation", {}).get("name", "sync"),
        "final_macro_f1": float(rounds[-1]["macro_f1"]) if rounds else None,
        "baseline_macro_f1": float(rounds[-1]["baseline_macro_f1"]) if rounds else None,
        "aggregations": len(rounds),
        "aggregations_with_slow_device": int(sum(with_slow)),
        "slow_device_share_after_first": (sum(after) / len(after)) if after else None,
        "mean_staleness": statistics.fmean(stale) if stale else 0.0,
        "rebound_updates": sum(
            1 for r in rounds for c in r.get("contributors", []) if c.get("rebound")
        ),
        "device_updates": sum(int(r["fit_clients"]) for r in rounds),
        "device_epochs": device_epochs(rounds, local_epochs),
        "setup_seconds": setup,
        "training_seconds": curve[-1][0] if curve else None,
        "wall_seconds": wall,
        "curve": curve,
    }


def time_to(curve: list[list[Any]], target: float) -> float | None:
    for t, f1, *_ in curve:
        if f1 >= target:
            return t
    return None


def run_one(args, aggregation: str, rounds: int, data: str, workdir: Path, tag: str) -> dict:
    from fedids.sim.device_processes import run_with_device_processes

    cfg = make_cfg(args, aggregation, rounds, data)
    t0 = time.perf_counter()
    doc = run_with_device_processes(cfg, workdir / f"{tag}-{aggregation}", num_devices=args.devices)
    wall = time.perf_counter() - t0
    out = summarize(doc, slow_device_id(args), args.devices, wall, int(cfg["local_epochs"]))
    print(
        f"{tag} {aggregation:>8}: {out['aggregations']} aggregations in "
        f"{out['training_seconds']:.1f} s (+{out['setup_seconds']:.1f} s setup), final macro-F1 "
        f"{out['final_macro_f1']:.4f}, slow device in {out['aggregations_with_slow_device']}",
        flush=True,
    )
    return out


def equal_work_versions(rounds: int, devices: int) -> int:
    """Buffered versions aggregating about as many device updates as ``rounds`` sync rounds
    (one slow device in every second version: ``devices - 0.5`` updates per version)."""
    return max(1, round(rounds * devices / (devices - 0.5)))


def median_or_none(values: list[float | None]) -> float | None:
    """Median over repeats, a repeat that never got there counting as infinitely late."""
    if not values:
        return None
    m = statistics.median([math.inf if v is None else v for v in values])
    return None if math.isinf(m) else m


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data, data_label = data_overrides(args)
    buffered_rounds = args.buffered_rounds or equal_work_versions(args.rounds, args.devices)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fedids-stragglers-"))
    pairs = []
    for i in range(args.repeats):
        order = ("sync", "buffered") if i % 2 == 0 else ("buffered", "sync")
        pair = {}
        for agg in order:
            rounds = args.rounds if agg == "sync" else buffered_rounds
            pair[agg] = run_one(args, agg, rounds, data, workdir, f"r{i}")
        for agg in ("sync", "buffered"):
            target = pair["sync"]["final_macro_f1"] - 0.01
            pair[agg]["target_macro_f1"] = target
            pair[agg]["time_to_target_s"] = time_to(pair[agg]["curve"], target)
        pairs.append(pair)
    doc = report(args, pairs, data_label, buffered_rounds)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=2))
    print(table(doc))
    if args.png is not None:
        try:
            from fedids.report import plot_stragglers
        except ImportError:
            print("fedids.report.plot_stragglers is not available here: no plot drawn")
        else:
            plot_stragglers(doc, args.png)
            print(f"plot: {args.png}")
    return 0


def report(args, pairs: list[dict], data_label: str, buffered_rounds: int) -> dict[str, Any]:
    """``{"sync": {...}, "buffered": {...}}`` from the first pair, medians over repeats."""
    doc: dict[str, Any] = {}
    for agg in ("sync", "buffered"):
        runs = [p[agg] for p in pairs]
        entry = dict(runs[0])
        if len(runs) > 1:
            for key in ("time_to_target_s", "final_macro_f1", "training_seconds"):
                entry[key] = median_or_none([r[key] for r in runs])
            entry["repeats"] = [{k: v for k, v in r.items() if k != "curve"} for r in runs]
        doc[agg] = entry
    s, b = doc["sync"], doc["buffered"]
    ratio = (
        b["time_to_target_s"] / s["time_to_target_s"]
        if b["time_to_target_s"] is not None and s["time_to_target_s"]
        else None
    )
    doc["comparison"] = {
        "time_to_target_ratio": ratio,
        "final_macro_f1_difference": b["final_macro_f1"] - s["final_macro_f1"],
        "criteria": {
            "time_to_target_at_most_0.6x": ratio is not None and ratio <= 0.6,
            "final_macro_f1_within_0.01": abs(b["final_macro_f1"] - s["final_macro_f1"]) <= 0.01,
            "slow_device_in_half_after_first": (b["slow_device_share_after_first"] or 0) >= 0.5,
        },
    }
    doc["setup"] = {
        "mode": args.mode,
        "devices": args.devices,
        "slow_partition": args.slow_partition,
        "slow_factor": args.slow_factor,
        "simulated_training_seconds": {
            "fast": args.base_seconds,
            "slow": args.base_seconds * args.slow_factor,
        },
        "sync_rounds": args.rounds,
        "buffered_versions": buffered_rounds,
        "training": f"{TRAINING} {args.overrides}".strip(),
        "idle_epochs_factor": args.idle_epochs_factor,
        "data": data_label,
        "classification": args.classification,
        "repeats": args.repeats,
        "runner": "one process per device (fedids.sim.device_processes), server in this process",
        "times": "seconds from the end of the statistics phase (same protocol in both modes)",
        "note": "wall-clock on a shared machine: figures are noisy; the slowdown is sleep",
    }
    return doc


def table(doc: dict[str, Any]) -> str:
    def cell(v: Any, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    lines = [
        "| aggregation | aggregations | slow device in | time to target (s) | final macro-F1 |",
        "|---|---|---|---|---|",
    ]
    for agg in ("sync", "buffered"):
        r = doc[agg]
        lines.append(
            f"| {agg} | {r['aggregations']} | {r['aggregations_with_slow_device']} | "
            f"{cell(r['time_to_target_s'], '.1f')} | {cell(r['final_macro_f1'], '.4f')} |"
        )
    c = doc["comparison"]
    lines.append(
        f"\ntarget macro-F1 {doc['sync']['target_macro_f1']:.4f}; time-to-target ratio "
        f"{cell(c['time_to_target_ratio'], '.2f')}; criteria {c['criteria']}"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
