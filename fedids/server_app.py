"""The aggregation side: FedAvg (plain) or PaillierFedAvg, with per-round records.

The server needs no data and, in Paillier mode, no private key: it learns the model's
quality only from the confusion matrices devices report on their validation splits.
It imports no torch.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from flwr.common import Context, EvaluateRes, FitRes, Scalar, parameters_to_ndarrays
from flwr.server import ServerApp, ServerAppComponents, ServerConfig
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import FedAvg, Strategy

from fedids.artifacts import RunRecorder, make_run_name, run_header
from fedids.config import compose_config, to_plain
from fedids.deploy.waiting import BoundedClientManager  # moved; the import keeps old users
from fedids.metrics import from_confusion

log = logging.getLogger("fedids.server")


def payload_bytes(res: FitRes) -> int:
    """Bytes a client sent up: serialized arrays plus its metrics (not gRPC/TLS framing)."""
    tensors = sum(len(t) for t in res.parameters.tensors)
    meta = sum(len(str(k)) + len(str(v)) for k, v in (res.metrics or {}).items())
    return tensors + meta


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else 0.0


class RecordingMixin:
    """Wraps a Flower strategy: sends run info to clients, records every round."""

    recorder: RunRecorder
    num_rounds: int
    run_path: Path

    def _init_recording(self, recorder: RunRecorder, num_rounds: int, local_epochs: int) -> None:
        self.recorder = recorder
        self.num_rounds = num_rounds
        self.local_epochs = local_epochs
        self.run_path = recorder.run_path
        self._round: dict[int, dict[str, Any]] = {}

    def _config(self, server_round: int) -> dict[str, Scalar]:
        return {
            "server_round": server_round,
            "local_epochs": self.local_epochs,
            "run_path": str(self.run_path),
            "run_name": self.run_path.name,
            "final": server_round == self.num_rounds,
        }

    def configure_fit(self, server_round, parameters, client_manager):
        self._round[server_round] = {"start": time.perf_counter()}
        instructions = super().configure_fit(server_round, parameters, client_manager)  # type: ignore[misc]
        for _, ins in instructions:
            ins.config.update(self._config(server_round))
        return instructions

    def configure_evaluate(self, server_round, parameters, client_manager):
        instructions = super().configure_evaluate(server_round, parameters, client_manager)  # type: ignore[misc]
        for _, ins in instructions:
            ins.config.update(self._config(server_round))
        return instructions

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[Any],
    ):
        info = self._round.setdefault(server_round, {"start": time.perf_counter()})
        min_fit = int(getattr(self, "min_fit_clients", 1))
        if len(results) < min_fit:
            self.recorder.flush(status="failed")
            raise RuntimeError(
                f"round {server_round}: {len(results)} updates arrived ({len(failures)} devices "
                f"failed or timed out) but federation.min_fit_clients={min_fit}; stopping"
            )
        t0 = time.perf_counter()
        parameters, metrics = super().aggregate_fit(server_round, results, failures)  # type: ignore[misc]
        info["aggregate_seconds"] = time.perf_counter() - t0
        sizes = [payload_bytes(res) for _, res in results]
        info["upload_bytes"] = sizes
        info["fit_failures"] = len(failures)
        info["fit_clients"] = len(results)
        for key in ("train_seconds", "encrypt_seconds", "decrypt_seconds"):
            info[key] = _mean(
                [float(r.metrics[key]) for _, r in results if key in (r.metrics or {})]
            )
        info["strategy_metrics"] = dict(metrics or {})
        if parameters is not None:
            info["download_bytes"] = sum(len(t) for t in parameters.tensors)
            if self.num_rounds == server_round and getattr(self, "save_plain_parameters", False):
                np.savez(
                    self.run_path / "global_parameters.npz", *parameters_to_ndarrays(parameters)
                )
        return parameters, metrics

    def aggregate_evaluate(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, EvaluateRes]],
        failures: list[Any],
    ):
        loss, metrics = super().aggregate_evaluate(server_round, results, failures)  # type: ignore[misc]
        info = self._round.get(server_round, {"start": time.perf_counter()})
        if not results:
            log.warning(
                "round %d: no evaluation results (%d failures)", server_round, len(failures)
            )
            return loss, metrics
        total_cm: np.ndarray | None = None
        class_names: list[str] | None = None
        for proxy, res in results:
            m = res.metrics or {}
            try:
                cm = np.asarray(json.loads(str(m["confusion"])), dtype=np.int64)
                names = json.loads(str(m["class_names"]))
            except (KeyError, ValueError) as exc:
                log.warning(
                    "round %d: client %s sent no usable confusion matrix (%s)",
                    server_round,
                    proxy.cid,
                    exc,
                )
                continue
            if class_names is None:
                class_names, total_cm = names, np.zeros_like(cm)
            if names != class_names or cm.shape != total_cm.shape:  # type: ignore[union-attr]
                log.warning(
                    "round %d: client %s reports classes %s, expected %s; skipped",
                    server_round,
                    proxy.cid,
                    names,
                    class_names,
                )
                continue
            total_cm += cm  # type: ignore[operator]
        if total_cm is None or class_names is None:
            return loss, metrics
        record = {"round": server_round, **from_confusion(total_cm, class_names)}
        record.update(
            {
                "loss": float(loss) if loss is not None else None,
                "round_seconds": time.perf_counter() - info["start"],
                "upload_bytes_per_client": _mean(info.get("upload_bytes", [])),
                "upload_bytes_by_client": info.get("upload_bytes", []),
                "download_bytes": info.get("download_bytes", 0),
                "fit_clients": info.get("fit_clients", 0),
                "fit_failures": info.get("fit_failures", 0),
                "evaluate_clients": len(results),
                "evaluate_failures": len(failures),
                "train_seconds": info.get("train_seconds", 0.0),
                "encrypt_seconds": info.get("encrypt_seconds", 0.0),
                "aggregate_seconds": info.get("aggregate_seconds", 0.0),
                "decrypt_seconds": info.get("decrypt_seconds", 0.0),
                "evaluate_decrypt_seconds": _mean(
                    [float(r.metrics.get("decrypt_seconds", 0.0)) for _, r in results]
                ),
                "strategy_metrics": info.get("strategy_metrics", {}),
            }
        )
        self.recorder.add_round(record)
        log.info(
            "round %d: macro-F1 %.4f accuracy %.4f FPR %.4f (%d records) in %.1f s",
            server_round,
            record["macro_f1"],
            record["accuracy"],
            record["false_positive_rate"],
            record["n_records"],
            record["round_seconds"],
        )
        if server_round == self.num_rounds:
            self.recorder.flush(status="completed")
            print(
                "\nfedids run summary (figures from the devices' validation splits)\n"
                + self.recorder.summary_table()
                + f"\n\nartifacts: {self.run_path}\n",
                flush=True,
            )
        return loss, metrics


class PlainRecordingFedAvg(RecordingMixin, FedAvg):
    """Plain FedAvg, recorded."""

    save_plain_parameters = True


def _evaluate_metrics(results: list[tuple[int, dict[str, Scalar]]]) -> dict[str, Scalar]:
    """Flower wants an aggregation fn; the real aggregation is the confusion-matrix sum."""
    return {"evaluate_clients": len(results)}


def build_strategy(cfg: dict[str, Any], recorder: RunRecorder) -> Strategy:
    """The strategy the config asks for, with the federation settings of ``cfg.federation``."""
    fed = cfg["federation"]
    common = dict(
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
        strategy: Any = PlainRecordingFedAvg(**common)
    else:
        from fedids.crypto.codec import CodecParams
        from strategies.paillier_fedavg import PaillierFedAvg

        class PaillierRecordingFedAvg(RecordingMixin, PaillierFedAvg):
            """Paillier FedAvg, recorded (no plaintext model exists on the server)."""

        strategy = PaillierRecordingFedAvg(
            codec=CodecParams.from_config(cfg["mode"]),
            expected_fingerprint=cfg["mode"].get("expected_fingerprint"),
            **common,
        )
    strategy._init_recording(recorder, int(cfg["num_server_rounds"]), int(cfg["local_epochs"]))
    return strategy


def server_fn(context: Context) -> ServerAppComponents:
    cfg = to_plain(compose_config(context.run_config))
    run_name = cfg["run_name"] or make_run_name(getattr(context, "run_id", None))
    cfg["run_name"] = run_name
    run_path = (Path(cfg["run_dir"]).expanduser() / run_name).resolve()
    recorder = RunRecorder(run_path, cfg, header=run_header(cfg, run_name))
    log.info("fedids run %s (%s mode) writing to %s", run_name, cfg["mode"]["name"], run_path)
    strategy = build_strategy(cfg, recorder)
    config = ServerConfig(
        num_rounds=int(cfg["num_server_rounds"]),
        round_timeout=float(cfg["federation"]["round_timeout"]),
    )
    return ServerAppComponents(
        strategy=strategy,
        config=config,
        client_manager=BoundedClientManager(float(cfg["federation"]["round_timeout"])),
    )


app = ServerApp(server_fn=server_fn)
