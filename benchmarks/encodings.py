"""Which numeric representation lets the detector learn? Measured centrally, per file.

For every CSV in ``--data`` (TON_IoT telemetry by default) and both classifications:
majority baseline, random forest, and the torch model with each candidate encoding
(macro-F1 on the union of the 2 devices' validation splits, after 10 and 20 epochs),
plus the model's parameter count (what Paillier encrypts every round).

    python benchmarks/encodings.py --data ../shared/data/ton_iot --json /tmp/enc.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from fedids.baseline import (
    forest_reference,
    load_pooled,
    majority_reference,
    run_config,
    torch_reference,
)
from fedids.data import build_encoder
from fedids.data.stats import pooled_totals

#: name -> (encoding overrides, hidden layers, learning rate)
CANDIDATES: dict[str, tuple[dict, list[int], float]] = {
    "standard 64,32": ({"numeric": ["standard"]}, [64, 32], 1e-3),
    "quantile 64,32": ({"numeric": ["quantile"]}, [64, 32], 1e-3),
    "onehot16 64,32": ({"numeric": ["onehot"], "bins": 16}, [64, 32], 1e-3),
    "ple16 64,32": ({"numeric": ["ple"], "bins": 16}, [64, 32], 1e-3),
    "onehot64 64,32": ({"numeric": ["onehot"], "bins": 64}, [64, 32], 1e-3),
    "q+periodic8 64,32": ({"numeric": ["quantile", "periodic"], "frequencies": 8}, [64, 32], 1e-3),
    "q+periodic8 64,32 lr3e-3": (
        {"numeric": ["quantile", "periodic"], "frequencies": 8}, [64, 32], 3e-3),
    "q+periodic8 128,64 lr3e-3": (
        {"numeric": ["quantile", "periodic"], "frequencies": 8}, [128, 64], 3e-3),
    "standard 64,32 lr3e-3": ({"numeric": ["standard"]}, [64, 32], 3e-3),
    "onehot64 64,32 lr3e-3": ({"numeric": ["onehot"], "bins": 64}, [64, 32], 3e-3),
    "q+periodic1 64,32 lr3e-3": (
        {"numeric": ["quantile", "periodic"], "frequencies": 1}, [64, 32], 3e-3),
    "q+periodic2 64,32 lr3e-3": (
        {"numeric": ["quantile", "periodic"], "frequencies": 2}, [64, 32], 3e-3),
    "quantile 64,32 lr3e-3": ({"numeric": ["quantile"]}, [64, 32], 3e-3),
    "q+periodic10 128,64 lr3e-3": (
        {"numeric": ["quantile", "periodic"], "frequencies": 10}, [128, 64], 3e-3),
    "q+periodic8 96,48 lr3e-3": (
        {"numeric": ["quantile", "periodic"], "frequencies": 8}, [96, 48], 3e-3),
}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data/ton_iot")
    ap.add_argument("--json", default="")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--only", default="", help="candidate names separated by ;")
    ap.add_argument("--classification", default="multi,binary")
    ap.add_argument("--no-forest", action="store_true")
    ap.add_argument("--synthetic", type=int, default=0, help="SYNTHETIC rows instead of --data")
    args = ap.parse_args(argv)
    chosen = [c for c in CANDIDATES if not args.only or c in args.only.split(";")]
    results = []
    if args.synthetic:
        datasets = [("SYNTHETIC", [f"dataset.rows={args.synthetic}"])]
    else:
        datasets = [(csv.name, ["dataset=ton_iot", f"dataset.path={csv}"])
                    for csv in sorted(Path(args.data).glob("*.csv"))]  # fmt: skip
    for name_, dataset_over in datasets:
        for cls in args.classification.split(","):
            cfg = run_config([*dataset_over, f"classification={cls}"])
            p = load_pooled(cfg, 2)
            row = {
                "file": name_,
                "classification": cls,
                "majority": majority_reference(p),
                "forest": None if args.no_forest else forest_reference(p, 42),
            }
            print(f"{name_} {cls}: majority {row['majority']:.3f} forest {row['forest']}",
                  flush=True)  # fmt: skip
            for name in chosen:
                enc_over, hidden, lr = CANDIDATES[name]
                enc_cfg = {**cfg["encoding"], **enc_over}
                c = {**cfg, "encoding": enc_cfg, "model": {**cfg["model"], "hidden": hidden},
                     "train": {**cfg["train"], "lr": lr}}  # fmt: skip
                spec = p.encoder.spec
                tables = [t.train for t in p.tables]
                enc = build_encoder(spec, enc_cfg, pooled_totals(spec, enc_cfg, tables))
                t0 = time.perf_counter()
                r = torch_reference(p, c, args.epochs, encoder=enc)
                row[name] = {"f1_10": r["curve"][min(9, len(r["curve"]) - 1)],
                             "f1_last": r["macro_f1"], "parameters": r["parameters"],
                             "inputs": r["inputs"], "curve": r["curve"]}  # fmt: skip
                print(f"  {name:28s} 10ep {row[name]['f1_10']:.3f} {args.epochs}ep "
                      f"{r['macro_f1']:.3f} params {r['parameters']:6d} inputs {r['inputs']:4d}"
                      f" ({time.perf_counter() - t0:.0f}s) curve "
                    + " ".join(f"{c:.3f}" for c in r["curve"]), flush=True)  # fmt: skip
            results.append(row)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
