"""Does the detector learn real data? Macro-F1 per CSV, centralized and federated.

For every CSV in ``--data`` (a dataset preset, TON_IoT telemetry by default), binary and
multi-class: the majority baseline, a centralized random forest, the centralized torch
model (rounds x local epochs), then federated runs in process (plain and Paillier; IID and
Dirichlet(alpha) partitions; ``--devices`` devices). All figures are macro-F1 on the union
of the devices' validation splits, the records every run is evaluated on.

    python benchmarks/real_data.py --data ../shared/data/ton_iot --json /tmp/real.json

The federated columns need ``fedids.sim.inprocess.run_experiment`` (the v2 protocol with the
stats phase); without it they are reported as not run. ``--centralized-only`` skips them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from fedids.baseline import references, run_config
from fedids.metrics_quality import quality_warning

#: federated column name -> (mode, partition)
FEDERATED = {
    "plain iid": ("plain", "iid"),
    "paillier iid": ("paillier", "iid"),
    "plain dir": ("plain", "dirichlet"),
    "paillier dir": ("paillier", "dirichlet"),
}


def federated(
    cfg_overrides: list[str], run_path: Path, reference: float | None = None
) -> dict[str, Any]:
    """One in-process federated run; its final macro-F1 and quality warning."""
    from fedids.sim.inprocess import run_experiment

    cfg = run_config(cfg_overrides)
    t0 = time.perf_counter()
    doc = run_experiment(cfg, run_path)
    rounds = sorted(doc.get("rounds") or [], key=lambda r: r["round"])
    if not rounds:
        return {"macro_f1": None, "error": "no round completed"}
    last = rounds[-1]
    cm = last.get("confusion_matrix")
    baseline = last.get("baseline_macro_f1")
    verdict = None
    if baseline is not None:  # the shared rule, with random guessing as a floor too
        support = [sum(row) for row in cm] if cm else None
        verdict = quality_warning(last["macro_f1"], baseline, support=support,
                                  reference_macro_f1=reference)  # fmt: skip
    return {
        "macro_f1": last["macro_f1"],
        "per_round": [r["macro_f1"] for r in rounds],
        "baseline_macro_f1": baseline,
        # the shared rule with the class support (chance floor); the run's own line beside
        "quality_warning": verdict if baseline is not None else doc.get("quality_warning"),
        "run_quality_warning": doc.get("quality_warning"),
        "seconds": time.perf_counter() - t0,
    }


def _cell(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else "  -  " if value is None else str(value)


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    head = ["file", "task", "majority", "forest", "torch", *columns]
    widths = [34, 6, 8, 8, 8, *[max(12, len(c)) for c in columns]]
    out = [" ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    for r in rows:
        cells = [r["file"][:34], r["classification"], _cell(r["majority"]), _cell(r["forest"]),
                 _cell(r["torch"])]  # fmt: skip
        for c in columns:
            fed = r["federated"].get(c) or {}
            warned = fed.get("quality_warning")
            cells.append(_cell(fed.get("macro_f1")) + (" !" if warned else ""))
        out.append(" ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)))
    out.append("! = quality warning: not clearly better than the majority class or chance")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/ton_iot"))
    ap.add_argument("--json", type=Path, help="write every figure to this file")
    ap.add_argument("--dataset", default="ton_iot", help="dataset preset (conf/dataset)")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--local-epochs", type=int, default=2)
    ap.add_argument("--devices", type=int, default=2)
    ap.add_argument("--alpha", type=float, default=0.5, help="Dirichlet alpha")
    ap.add_argument("--columns", default=",".join(FEDERATED), help="federated columns to run")
    ap.add_argument("--classification", default="binary,multi")
    ap.add_argument("--centralized-only", action="store_true")
    ap.add_argument("--run-dir", type=Path, help="keep federated runs here (default: temp)")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    args = ap.parse_args(argv)
    csvs = sorted(args.data.glob("*.csv"))
    if not csvs:
        print(f"real_data: no CSV files in {args.data}", file=sys.stderr)
        return 2
    columns = [] if args.centralized_only else [c for c in args.columns.split(",") if c]
    unknown = [c for c in columns if c not in FEDERATED]
    if unknown:
        print(f"real_data: unknown column(s) {unknown}; known: {list(FEDERATED)}", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory(prefix="fedids-real-") as tmp:
        base_dir = args.run_dir or Path(tmp)
        for csv in csvs:
            for cls in args.classification.split(","):
                common = [
                    f"dataset={args.dataset}", f"dataset.path={csv.resolve()}",
                    f"classification={cls}", f"num_server_rounds={args.rounds}",
                    f"local_epochs={args.local_epochs}",
                    f"federation.num_partitions={args.devices}",
                    f"federation.min_fit_clients={args.devices}",
                    f"federation.min_evaluate_clients={args.devices}",
                    f"federation.min_available_clients={args.devices}", *args.overrides,
                ]  # fmt: skip
                refs = references(run_config(common), num_partitions=args.devices)
                row: dict[str, Any] = {
                    "file": csv.name, "classification": cls,
                    "majority": refs["majority_macro_f1"], "forest": refs["forest_macro_f1"],
                    "torch": refs["torch_macro_f1"], "references": refs, "federated": {},
                }  # fmt: skip
                print(f"{csv.name} {cls}: majority {row['majority']:.3f} forest "
                      f"{_cell(row['forest'])} torch {row['torch']:.3f} "
                      f"({refs['torch_parameters']} parameters)", flush=True)  # fmt: skip
                for col in columns:
                    mode, part = FEDERATED[col]
                    over = [*common, f"mode={mode}", f"partition={part}"]
                    if part == "dirichlet":
                        over.append(f"partition.alpha={args.alpha}")
                    run_path = base_dir / f"{csv.stem}-{cls}-{mode}-{part}"
                    try:
                        result = federated(over, run_path, row["forest"])
                    except ImportError as exc:
                        result = {"macro_f1": None, "error": f"federated runs unavailable: {exc}"}
                    row["federated"][col] = result
                    print(f"  {col}: {_cell(result.get('macro_f1'))} "
                          f"{result.get('quality_warning') or result.get('error') or ''}",
                          flush=True)  # fmt: skip
                rows.append(row)
    print()
    print(table(rows, columns))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
