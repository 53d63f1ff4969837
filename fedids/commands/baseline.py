"""``fedids baseline``: centralized references beside a federated result.

Loads the devices' splits exactly as a run with the same Hydra overrides does, pools
them, and prints the macro-F1 of the majority class, a random forest (scikit-learn, the
optional ``baseline`` extra) and the run's own torch model trained centrally, all on the
union of the devices' validation splits. With ``--run DIR`` the run's own
``config.yaml`` is used and its final macro-F1 is printed beside the references, with the
verdict of :func:`fedids.metrics_quality.quality_warning`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "baseline",
        help="centralized references (majority, random forest, torch) for a run's data",
        description=__doc__.splitlines()[0],
    )
    p.add_argument("overrides", nargs="*", help="Hydra overrides, as for a run (a=b)")
    p.add_argument("--run", type=Path, help="a run directory: use its config, show its result")
    p.add_argument("--epochs", type=int, help="torch epochs (default: rounds x local epochs)")
    p.add_argument("--no-forest", action="store_true", help="skip the random forest")
    p.add_argument("--json", type=Path, help="also write the figures to this file")
    p.set_defaults(func=run)


def _run_config(args: argparse.Namespace) -> dict[str, Any]:
    from fedids.baseline import run_config

    if args.run is None:
        return run_config(args.overrides)
    path = args.run / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{args.run}: no config.yaml (is it a fedids run directory?)")
    cfg = yaml.safe_load(path.read_text())
    if args.overrides:
        raise ValueError("give either --run or Hydra overrides, not both")
    if "encoding" not in cfg:
        cfg["encoding"] = run_config([])["encoding"]
    return cfg


def federated_result(run_dir: Path) -> dict[str, Any] | None:
    """Final-round figures of a run's metrics.json (None when it has no round yet)."""
    path = run_dir / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: no metrics.json")
    doc = json.loads(path.read_text())
    rounds = doc.get("rounds") or []
    if not rounds:
        return None
    last = max(rounds, key=lambda r: r["round"])
    return {
        "round": last["round"],
        "macro_f1": last["macro_f1"],
        "baseline_macro_f1": last.get("baseline_macro_f1"),
        "mode": doc.get("mode"),
        "quality_warning": doc.get("quality_warning"),
    }


def report(refs: dict[str, Any], fed: dict[str, Any] | None) -> str:
    from fedids.metrics_quality import quality_warning

    lines = [
        f"data: {refs['source']}" + (" (SYNTHETIC)" if refs["synthetic"] else ""),
        f"layout: {refs['layout']}",
        f"{refs['classification']}, {refs['devices']} devices pooled: "
        f"{refs['train_records']} train / {refs['val_records']} validation records",
        "",
        f"{'reference':<34} macro-F1",
        f"{'majority class':<34} {refs['majority_macro_f1']:.4f}",
    ]
    forest = refs.get("forest_macro_f1")
    lines.append(
        f"{'random forest (centralized)':<34} "
        + (f"{forest:.4f}" if forest is not None else "n/a (pip install 'fedids[baseline]')")
    )
    lines.append(
        f"{'torch model (centralized)':<34} {refs['torch_macro_f1']:.4f}"
        f"  ({refs['torch_epochs']} epochs, {refs['torch_parameters']} parameters)"
    )
    if fed is not None:
        lines.append(
            f"{'federated ' + str(fed['mode']) + ' (round ' + str(fed['round']) + ')':<34} "
            f"{fed['macro_f1']:.4f}"
        )
        warning = quality_warning(
            fed["macro_f1"],
            refs["majority_macro_f1"],
            support=refs.get("val_support"),
            reference_macro_f1=forest,
            synthetic=refs["synthetic"],
        )
        lines += ["", warning or "The federated model is clearly better than the majority class."]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from fedids.baseline import references
    from fedids.data import DataError

    try:
        cfg = _run_config(args)
        fed = federated_result(args.run) if args.run is not None else None
        refs = references(cfg, epochs=args.epochs, forest=not args.no_forest)
    except (DataError, FileNotFoundError, ValueError) as exc:
        print(f"fedids baseline: {exc}", file=sys.stderr)
        return 2
    print(report(refs, fed))
    if args.json:
        args.json.write_text(json.dumps({"references": refs, "federated": fed}, indent=2))
    return 0
