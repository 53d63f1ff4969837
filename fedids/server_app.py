"""The ServerApp: compose the configuration, pick the strategy, run the fedids loop.

The server needs no data and, in Paillier mode, no private key: it learns the model's
quality only from the federation-wide confusion matrix that the devices report. It imports
no torch. The loop itself is :class:`fedids.server.loop.FedIDSServer`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flwr.common import Context
from flwr.server import ServerApp, ServerAppComponents, ServerConfig

from fedids.artifacts import RunRecorder, make_run_name, run_header
from fedids.config import compose_config, to_plain
from fedids.deploy.waiting import BoundedClientManager
from fedids.failures import FedidsError, server_guard
from fedids.logs import route_to_flower
from fedids.preflight import check_federation, in_simulation, preflight
from fedids.server.loop import FedIDSServer, RunPlan
from strategies.fedids_base import FedIDSStrategyBase

log = logging.getLogger("fedids.server")


def _evaluate_metrics(results: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
    """Flower wants an aggregation fn; the real aggregation is the count-vector sum."""
    return {"evaluate_clients": len(results)}


def build_strategy(cfg: dict[str, Any], run_id: int, *, simulation: bool) -> FedIDSStrategyBase:
    """The strategy the config asks for, with the federation settings of ``cfg.federation``."""
    fed = cfg["federation"]
    common: dict[str, Any] = dict(
        fraction_fit=float(fed["fraction_fit"]),
        fraction_evaluate=float(fed["fraction_evaluate"]),
        min_fit_clients=int(fed["min_fit_clients"]),
        min_evaluate_clients=int(fed["min_evaluate_clients"]),
        min_available_clients=int(fed["min_available_clients"]),
        evaluate_metrics_aggregation_fn=_evaluate_metrics,
        fit_metrics_aggregation_fn=lambda results: {"fit_clients": len(results)},
        accept_failures=True,
    )
    if cfg["mode"]["name"] == "plain":
        from strategies.plain_fedavg import PlainFedAvg

        return PlainFedAvg(
            run_id=run_id,
            max_clients=int(fed.get("max_clients", 128)),
            max_num_examples=int(fed["max_num_examples"]),
            **common,
        )
    from fedids.crypto.codec import CodecParams
    from strategies.paillier_fedavg import PaillierFedAvg

    fingerprint = cfg["mode"].get("expected_fingerprint")
    if not fingerprint and not simulation:
        raise FedidsError(
            "mode.expected_fingerprint is required in a deployment: set it to the fingerprint "
            "`fedids keygen` printed, so the server sums only updates under the federation's key"
        )
    return PaillierFedAvg(
        codec=CodecParams.from_config(cfg["mode"]),
        run_id=run_id,
        expected_fingerprint=fingerprint,
        **common,
    )


def stats_passes(cfg: dict[str, Any]) -> int:
    from fedids.data.stats import stats_passes as passes

    return int(passes(cfg.get("encoding")))


def make_server(
    cfg: dict[str, Any],
    run_id: int,
    run_path: Path,
    *,
    simulation: bool,
    client_manager: Any,
    header_extra: dict[str, Any] | None = None,
    recorder: RunRecorder | None = None,
) -> FedIDSServer:
    """Everything a run needs on the server side, from a composed (plain) config."""
    if recorder is None:
        extra = {"aggregation": {"name": (cfg.get("aggregation") or {}).get("name", "sync")}}
        extra.update(header_extra or {})
        recorder = RunRecorder(run_path, cfg, header=run_header(cfg, run_path.name, **extra))
    strategy = build_strategy(cfg, run_id, simulation=simulation)
    plan = RunPlan(
        run_id=run_id,
        num_rounds=int(cfg["num_server_rounds"]),
        local_epochs=int(cfg["local_epochs"]),
        stats_passes=stats_passes(cfg),
        mode=str(cfg["mode"]["name"]),
        run_path=str(run_path),
        simulation=simulation,
        save_plain_parameters=cfg["mode"]["name"] == "plain",
        setup_timeout=float(cfg["federation"].get("setup_timeout") or 0) or None,
        write_report=bool(cfg.get("report", True)),
    )

    def check_devices(n: int) -> None:
        check_federation(cfg, n)

    servers: dict[str, Any] = dict(
        client_manager=client_manager,
        strategy=strategy,
        plan=plan,
        recorder=recorder,
        check_devices=check_devices if simulation else None,
    )
    aggregation = dict(cfg.get("aggregation") or {"name": "sync"})
    if aggregation["name"] == "buffered":
        from fedids.server.buffered import BufferedFedIDSServer

        timeout = float(cfg["federation"]["round_timeout"])
        return BufferedFedIDSServer(aggregation=aggregation, round_timeout=timeout, **servers)
    return FedIDSServer(**servers)


def server_fn(context: Context) -> ServerAppComponents:
    route_to_flower()
    run_id = int(getattr(context, "run_id", 0) or 0)
    guard = server_guard(context.run_config, run_id or None)
    with guard:  # failures: one line on the console, error.log, metrics.json "failed"
        cfg = to_plain(compose_config(context.run_config))
        run_name = cfg["run_name"] or make_run_name(run_id or None)
        cfg["run_name"] = run_name
        run_path = (Path(cfg["run_dir"]).expanduser() / run_name).resolve()
        guard.set_run_path(run_path)
        log.info("fedids run %s (%s mode) writing to %s", run_name, cfg["mode"]["name"], run_path)
        recorder = RunRecorder(run_path, cfg, header=run_header(cfg, run_name))
        preflight(cfg)
        timeout = float(cfg["federation"]["round_timeout"])
        server = make_server(
            cfg,
            run_id,
            run_path,
            simulation=in_simulation(),
            client_manager=BoundedClientManager(timeout, simulation=in_simulation()),
            recorder=recorder,
        )
    return ServerAppComponents(
        server=server,
        config=ServerConfig(num_rounds=int(cfg["num_server_rounds"]), round_timeout=timeout),
    )


app = ServerApp(server_fn=server_fn)
