"""Benchmark of the alerting path: flows/s scored on one core, bundles/s built and published.

    python -m fedids.alerts.bench [--rows 1000000] [--alerts 2000] [--json out.json]

Measures, on synthetic WUSTL-schema flows (``fedids.data.synth``) and a small model trained
for a few seconds on them (or ``--model``):

* ``score``: feature matrix -> predict_proba -> verdicts on an in-memory table, one core
  (``torch.set_num_threads(1)``, ``POLARS_MAX_THREADS=1``), best of ``--repeat``;
* ``csv``: the same starting from the CSV file (read + score + aggregate), one core;
* ``bundles``: STIX bundles built and validated per second;
* ``publish``: alerts per second through the durable outbox and the idempotent producer to
  a local tansu broker (until every delivery report is in), unless ``--no-kafka``.
"""

from __future__ import annotations

import os

# one core, set before polars and torch start their thread pools
os.environ.setdefault("POLARS_MAX_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
import torch  # noqa: E402


def _train_quick_model(path: Path, seed: int = 0) -> Path:
    """A small multi-class model fitted for ~2 s on synthetic flows (realistic verdicts)."""
    from fedids.data.features import Scaler
    from fedids.data.schema import WUSTL_CLASSES, WUSTL_FEATURES
    from fedids.data.synth import generate
    from fedids.model import Detector, build_model

    df = generate(60_000, seed + 1)
    x = df.select(WUSTL_FEATURES).to_numpy().astype(np.float32)
    y = df["Traffic"].replace_strict({c: i for i, c in enumerate(WUSTL_CLASSES)}).to_numpy()
    scaler = Scaler.fit(x)
    xs, ys = torch.from_numpy(scaler.transform(x)), torch.from_numpy(y.astype(np.int64))
    model = build_model(len(WUSTL_FEATURES), len(WUSTL_CLASSES), [64, 32], 0.1, seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(3):
        for idx in torch.randperm(len(xs), generator=gen).split(512):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xs[idx]), ys[idx]).backward()
            opt.step()
    meta = {"hidden": [64, 32], "dropout": 0.1, "note": "benchmark model, synthetic data"}
    Detector(model, list(WUSTL_FEATURES), list(WUSTL_CLASSES), "multi", scaler, meta).save(path)
    return path


def _best(fn: Any, repeat: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def bench_score(detector: Any, flows: pl.DataFrame, batch_size: int, repeat: int) -> dict:
    from fedids.alerts.flows import decide, feature_matrix, normal_class_index, score

    normal = normal_class_index(detector.class_names)

    def run() -> int:
        x = feature_matrix(flows, detector.feature_names, "bench")
        probs = score(lambda b: detector.predict_proba(b, batch_size=len(b)), x, batch_size)
        return int(decide(probs, normal, None).flagged.sum())

    secs, flagged = _best(run, repeat)
    return {
        "rows": flows.height,
        "seconds": secs,
        "flows_per_s": flows.height / secs,
        "flagged": flagged,
    }


def bench_csv(model: Path, csv: Path, batch_size: int, repeat: int) -> dict:
    from fedids.alerts.aggregate import aggregate
    from fedids.alerts.detect import load_model
    from fedids.alerts.flows import (
        decide,
        detections_table,
        feature_matrix,
        normal_class_index,
        read_flows,
        score,
    )

    detector, _ = load_model(model)
    normal = normal_class_index(detector.class_names)

    def run() -> tuple[int, int]:
        df = read_flows(csv, detector.feature_names)
        x = feature_matrix(df, detector.feature_names, str(csv))
        probs = score(lambda b: detector.predict_proba(b, batch_size=len(b)), x, batch_size)
        det = detections_table(df, decide(probs, normal, None), detector.class_names)
        return df.height, len(aggregate(det, 60, time.time()))

    secs, (rows, groups) = _best(run, repeat)
    return {"rows": rows, "seconds": secs, "flows_per_s": rows / secs, "alerts": groups}


def _groups(n: int) -> list:
    from fedids.alerts.aggregate import AlertGroup

    return [
        AlertGroup(
            "DoS",
            f"203.0.113.{i % 250 + 1}",
            f"192.0.2.{i // 250 % 250 + 1}",
            1_613_390_400 + 60 * (i // 62500),
            60,
            10 + i % 50,
            1_613_390_401.0,
            1_613_390_459.0,
            0.93,
            0.99,
            (40000 + i % 7,),
            1,
            (502,),
            1,
            ("tcp",),
            (("tcp", 502),),
            True,
        )
        for i in range(n)
    ]


def bench_bundles(n: int) -> tuple[dict, list]:
    from fedids.alerts.stix import ModelInfo, build_alert

    info, now = ModelInfo("multi", "0" * 16), datetime.now(UTC)
    groups = _groups(n)
    t0 = time.perf_counter()
    alerts = [build_alert(g, "bench-device", info, now) for g in groups]
    secs = time.perf_counter() - t0
    size = sum(len(a.payload) for a in alerts) / max(1, n)
    return {"alerts": n, "seconds": secs, "bundles_per_s": n / secs, "mean_bytes": size}, alerts


def bench_publish(alerts: list, delivery_timeout: float = 30.0) -> dict:
    from fedids.alerts.broker import start_broker
    from fedids.alerts.kafkaconf import producer_config
    from fedids.alerts.outbox import NewAlert, Outbox
    from fedids.alerts.producer import AlertPublisher

    with start_broker() as broker, tempfile.TemporaryDirectory() as tmp:
        box = Outbox(tmp)
        conf = producer_config(broker.address, delivery_timeout)
        t0 = time.perf_counter()
        box.add(NewAlert(a.alert_id, "bench-alerts", a.payload, a.digest) for a in alerts)
        t_stored = time.perf_counter() - t0
        publisher = AlertPublisher(conf, box, delivery_timeout)
        publisher.submit(box.iter_pending())
        result = publisher.finish()
        secs = time.perf_counter() - t0
        left = box.count()
        box.close()
    return {
        "alerts": len(alerts),
        "delivered": result.delivered,
        "left_in_outbox": left,
        "seconds": secs,
        "outbox_seconds": t_stored,
        "bundles_per_s": result.delivered / secs,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m fedids.alerts.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--rows", type=int, default=1_000_000, help="flows to score [1000000]")
    p.add_argument("--alerts", type=int, default=2000, help="bundles to build/publish [2000]")
    p.add_argument("--batch-size", type=int, default=65536)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--model", type=Path, help="a model.pt (default: train a small one)")
    p.add_argument("--no-kafka", action="store_true", help="skip the publish benchmark")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    from fedids.alerts.detect import load_model
    from fedids.data.synth import generate

    results: dict[str, Any] = {
        "threads": {"torch": torch.get_num_threads(), "polars": pl.thread_pool_size()},
        "data": "synthetic (fedids.data.synth)",
    }
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or _train_quick_model(Path(tmp) / "model.pt")
        detector, _ = load_model(model)
        flows = generate(args.rows, 7)
        results["score"] = bench_score(detector, flows, args.batch_size, args.repeat)
        print(
            f"score   {results['score']['flows_per_s']:>12,.0f} flows/s  "
            f"({args.rows:,} flows in memory, one core)",
            flush=True,
        )
        csv = Path(tmp) / "flows.csv"
        flows.write_csv(csv)
        results["csv"] = bench_csv(model, csv, args.batch_size, max(1, args.repeat - 1))
        print(
            f"csv     {results['csv']['flows_per_s']:>12,.0f} flows/s  "
            f"(read + score + aggregate -> {results['csv']['alerts']} alerts)",
            flush=True,
        )
    results["bundles"], alerts = bench_bundles(args.alerts)
    print(
        f"bundles {results['bundles']['bundles_per_s']:>12,.0f} bundles/s built + validated "
        f"({results['bundles']['mean_bytes']:.0f} bytes each)",
        flush=True,
    )
    if not args.no_kafka:
        results["publish"] = bench_publish(alerts)
        pub = results["publish"]
        print(
            f"publish {pub['bundles_per_s']:>12,.0f} bundles/s via outbox -> local tansu "
            f"({pub['delivered']}/{pub['alerts']} delivered)",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
