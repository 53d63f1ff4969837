"""A federation in one process: clients and strategy called directly, no Ray, no gRPC.

For notebooks, benchmarks and fast tests. It runs the same ``FedIDSClient`` and the same
strategies (with the same recording) as ``flwr run``; only transport and scheduling are
skipped: arrays are serialized to Flower ``Parameters`` exactly as on the wire, so
``upload_bytes_per_client`` means the same thing.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from flwr.common import (
    Code,
    EvaluateRes,
    FitRes,
    Status,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)

from fedids.artifacts import RunRecorder, run_header


class LocalProxy(SimpleNamespace):
    """Stands in for a ClientProxy: strategies only read ``cid``."""


def fit_res(client: Any, parameters: list[np.ndarray], config: dict[str, Any]) -> FitRes:
    arrays, n, metrics = client.fit(parameters, config)
    return FitRes(Status(Code.OK, ""), ndarrays_to_parameters(arrays), n, metrics)


def eval_res(client: Any, parameters: list[np.ndarray], config: dict[str, Any]) -> EvaluateRes:
    loss, n, metrics = client.evaluate(parameters, config)
    return EvaluateRes(Status(Code.OK, ""), loss, n, metrics)


def run_rounds(
    strategy: Any, clients: list[Any], num_rounds: int, run_path: str | Path = ""
) -> list[np.ndarray]:
    """FedAvg-style rounds; returns the global arrays the strategy holds after the last round."""
    params = clients[0].get_parameters({})
    proxies = [LocalProxy(cid=str(1000 + i)) for i in range(len(clients))]
    for rnd in range(1, num_rounds + 1):
        config = {"server_round": rnd, "run_path": str(run_path), "final": rnd == num_rounds}
        if hasattr(strategy, "_round"):
            strategy._round[rnd] = {"start": time.perf_counter()}
        results = [(p, fit_res(c, params, config)) for p, c in zip(proxies, clients, strict=True)]
        aggregated, _ = strategy.aggregate_fit(rnd, results, [])
        if aggregated is None:
            raise RuntimeError(f"round {rnd}: the strategy aggregated nothing")
        params = parameters_to_ndarrays(aggregated)
        evals = [(p, eval_res(c, params, config)) for p, c in zip(proxies, clients, strict=True)]
        strategy.aggregate_evaluate(rnd, evals, [])
    return params


def run_experiment(cfg: dict[str, Any], run_path: str | Path) -> dict[str, Any]:
    """Run ``cfg`` (a composed, plain config) in-process; returns the metrics.json document."""
    import json

    from fedids.client_app import FedIDSClient
    from fedids.server_app import build_strategy

    run_path = Path(run_path)
    header = run_header(cfg, run_path.name, runner="in-process (fedids.inprocess)")
    recorder = RunRecorder(run_path, cfg, header=header)
    strategy = build_strategy(cfg, recorder)
    n = int(cfg["federation"]["num_partitions"])
    clients = [FedIDSClient(cfg, i, n) for i in range(n)]
    run_rounds(strategy, clients, int(cfg["num_server_rounds"]), run_path)
    return json.loads((run_path / "metrics.json").read_text())
