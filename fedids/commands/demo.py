"""``fedids demo``: the README's main job, end to end on one machine.

1. a federated run (2 simulated devices, Paillier mode by default) through ``flwr run``
   against a simulation SuperLink this command starts and stops;
2. held-out **synthetic** flows scored with the run's ``model.pt``;
3. the alerts published as STIX 2.1 to a Kafka-protocol broker (tansu, a demo/test
   dependency) started on loopback, and read back by the subscriber.
Everything started here is stopped here, by PID.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

BANNER = "=" * 78


def _say(text: str) -> None:
    print(f"\n{BANNER}\n{text}\n{BANNER}", flush=True)


def app_dir() -> Path:
    """The Flower app: the checkout that holds this package and its pyproject.toml."""
    root = Path(__file__).resolve().parents[2]
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file() or "[tool.flwr.app]" not in pyproject.read_text():
        raise FileNotFoundError(
            f"fedids demo runs from a source checkout (no Flower app pyproject.toml at {root})"
        )
    return root


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="federated run, then detection with STIX alerts over Kafka")
    p.add_argument("--mode", choices=["plain", "paillier"], default="paillier")
    p.add_argument("--classification", choices=["binary", "multi"], default="multi")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--local-epochs", type=int, default=1)
    p.add_argument("--run-dir", default="runs", help="where the run's artifacts go (default: runs)")
    p.add_argument("--hydra-overrides", default="", help="extra Hydra overrides for the run")
    p.add_argument("--heldout-rows", type=int, default=100_000, help="synthetic flows to score")
    p.add_argument("--topic", default="fedids-alerts")
    p.add_argument("--show", type=int, default=15, help="alerts to print (all are saved)")
    p.add_argument("--no-alerts", action="store_true", help="stop after the federated run")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fedids.simulation import simulation_link

    if args.rounds < 1 or args.local_epochs < 1 or args.heldout_rows < 1:
        print("--rounds, --local-epochs and --heldout-rows must be at least 1", file=sys.stderr)
        return 2
    run_dir = Path(args.run_dir).expanduser().resolve()
    run_name = time.strftime("demo-%Y%m%d-%H%M%S")
    run_path = run_dir / run_name
    _say(
        f"1/3  federated training: 2 simulated devices, {args.rounds} rounds, {args.mode} mode, "
        f"{args.classification}\n     data: SYNTHETIC flows in the WUSTL-IIoT-2021 schema "
        "(not real traffic)"
    )
    run_config = (
        f"num-server-rounds={args.rounds} local-epochs={args.local_epochs} "
        f"mode='{args.mode}' classification='{args.classification}' "
        f"run-dir='{run_dir}' run-name='{run_name}' hydra-overrides='{args.hydra_overrides}'"
    )
    t0 = time.perf_counter()
    with simulation_link(num_supernodes=2, num_cpus=1) as link:
        result = link.run(app_dir(), run_config, timeout=3600)
    metrics_path = run_path / "metrics.json"
    if result.returncode != 0 or not metrics_path.is_file():
        print(
            f"the federated run failed (exit code {result.returncode}); see the output above",
            file=sys.stderr,
        )
        return 1
    doc = json.loads(metrics_path.read_text())
    if doc.get("status") != "completed":
        print(f"the federated run did not complete: {metrics_path}", file=sys.stderr)
        return 1
    last = doc["rounds"][-1]
    print(
        f"\nfederated run finished in {time.perf_counter() - t0:.0f} s: last-round macro-F1 "
        f"{last['macro_f1']:.4f} (majority-class baseline "
        f"{last.get('baseline_macro_f1', float('nan')):.4f}), FPR "
        f"{last['false_positive_rate']:.4f} (devices' validation splits, synthetic data)"
        + (f"\nWARNING: {doc['quality_warning']}" if doc.get("quality_warning") else "")
        + f"\nartifacts: {run_path}",
        flush=True,
    )
    if args.no_alerts:
        return 0
    return _alerts(args, run_path, doc)


def _alerts(args: argparse.Namespace, run_path: Path, doc: dict) -> int:
    import yaml

    from fedids.alerts.broker import start_broker
    from fedids.alerts.detect import run_detect
    from fedids.alerts.subscriber import consume
    from fedids.data.synth import generate

    cfg = yaml.safe_load((run_path / "config.yaml").read_text())
    seed = int(cfg["dataset"].get("seed") or 7) + 1000  # not a seed any device trained on
    flows_csv = run_path / "heldout-flows-SYNTHETIC.csv"
    _say(
        f"2/3  detection: {args.heldout_rows} held-out SYNTHETIC flows (seed {seed}) scored with "
        f"{run_path / 'model.pt'}"
    )
    generate(args.heldout_rows, seed).write_csv(flows_csv)
    with start_broker(log_path=run_path / "broker.log") as broker:
        print(f"Kafka-protocol broker (tansu, demo only) on {broker.address}, pid {broker.pid}")
        report = run_detect(
            run_path / "model.pt",
            flows_csv,
            kafka=broker.address,
            topic=args.topic,
            out=run_path / "alerts.jsonl",
            outbox=run_path / "outbox",
            device_name="demo-site-0",
        )
        print(report.summary(), flush=True)
        _say(f"3/3  the decision engine's side: fedids subscribe --topic {args.topic}")
        shown = [0]

        def show(summary) -> None:
            shown[0] += 1
            if shown[0] <= args.show:
                print("  " + summary.line(), flush=True)
            elif shown[0] == args.show + 1:
                print(f"  ... (every alert is in {run_path / 'received-alerts.jsonl'})", flush=True)

        received = consume(
            broker.address,
            args.topic,
            group="decision-engine",
            max_messages=report.delivered,
            timeout=60,
            from_beginning=True,
            on_alert=show,
            out=run_path / "received-alerts.jsonl",
        )
    print(
        f"\nsubscriber received {received.alerts} valid STIX 2.1 alert bundle(s) "
        f"({received.malformed} malformed) of {report.delivered} delivered; "
        f"{report.pending} waiting in the outbox.\nDone. Everything above ran on SYNTHETIC data.",
        flush=True,
    )
    return 0 if received.alerts == report.delivered and report.pending == 0 else 1
