"""The device side: a Flower ``NumPyClient`` wrapping one device's train/validation data.

Node-config (as in deployment; the simulation supplies the first two):
``partition-id``, ``num-partitions``, optional ``data-path`` (the device's own CSV, used
whole), ``key-dir`` (its Paillier keys), ``run-dir`` (where it writes its model) and
``eaas-url`` / ``eaas-token-file`` / ``eaas-ca-file`` / ``eaas-fallback-local`` (use an
Encryption-as-a-Service instead of encrypting on the device).
In Paillier mode the device decrypts the global model it receives and encrypts the
update it sends; the server only ever sees ciphertexts.
"""

from __future__ import annotations

import json
import logging
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.client import ClientApp, NumPyClient
from flwr.common import Context

from fedids.config import compose_config, to_plain
from fedids.data import DeviceData, load_device_data
from fedids.failures import device_guard
from fedids.model import Detector, build_model, get_weights, set_weights
from fedids.task import confusion, loss_of, train

log = logging.getLogger("fedids.client")


@lru_cache(maxsize=4)
def _cached_data(key: str) -> DeviceData:
    """Simulation reuses ClientApp processes: load a device's data once per configuration."""
    args = json.loads(key)
    return load_device_data(**args)


def device_data(
    cfg: dict[str, Any], partition_id: int, num_partitions: int, data_path: str | None
) -> DeviceData:
    key = json.dumps(
        {
            "dataset": cfg["dataset"],
            "classification": cfg["classification"]["name"],
            "partition": cfg["partition"],
            "partition_id": partition_id,
            "num_partitions": num_partitions,
            "seed": cfg["seed"],
            "val_fraction": cfg["train"]["val_fraction"],
            "data_path": data_path,
        },
        sort_keys=True,
    )
    return _cached_data(key)


class FedIDSClient(NumPyClient):
    """One device: local training, evaluation, and (in Paillier mode) encryption."""

    def __init__(
        self,
        cfg: dict[str, Any],
        partition_id: int,
        num_partitions: int,
        *,
        data_path: str | None = None,
        key_dir: str | None = None,
        run_dir: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.partition_id = partition_id
        self.num_partitions = num_partitions
        self.key_dir = key_dir
        self.run_dir = run_dir
        self.data = device_data(cfg, partition_id, num_partitions, data_path)
        torch.set_num_threads(int(cfg["train"].get("torch_threads", 1)))
        self.model = build_model(
            len(self.data.feature_names),
            len(self.data.class_names),
            cfg["model"]["hidden"],
            cfg["model"]["dropout"],
            seed=int(cfg["seed"]),
        )
        self.paillier = cfg["mode"]["name"] == "paillier"
        self._secure: Any = None

    # -- Paillier plumbing -------------------------------------------------------------
    def _secure_channel(self, config: dict[str, Any]) -> Any:
        if self._secure is None:
            from fedids.secure_client import SecureChannel

            self._secure = SecureChannel.open(
                self.cfg["mode"],
                key_dir=self.key_dir,
                run_path=str(config.get("run_path", "")),
                partition_id=self.partition_id,
            )
        return self._secure

    def _receive(self, parameters: list[np.ndarray], config: dict[str, Any]) -> float:
        """Load the global model into the local model; returns seconds spent decrypting."""
        t0 = time.perf_counter()
        if self.paillier:
            from fedids.crypto.update import is_encrypted_payload

            if is_encrypted_payload(parameters):
                shapes = [tuple(w.shape) for w in get_weights(self.model)]
                parameters = self._secure_channel(config).decrypt(parameters, shapes)
        set_weights(self.model, parameters)
        return time.perf_counter() - t0

    # -- NumPyClient ---------------------------------------------------------------------
    def get_parameters(self, config: dict[str, Any]) -> list[np.ndarray]:
        return get_weights(self.model)

    def fit(self, parameters: list[np.ndarray], config: dict[str, Any]):
        decrypt_s = self._receive(parameters, config)
        secure = self._secure_channel(config) if self.paillier else None
        if secure is not None:
            secure.start_precompute(sum(w.size for w in get_weights(self.model)))
        t0 = time.perf_counter()
        epochs = int(config.get("local_epochs", self.cfg["local_epochs"]))
        server_round = int(config.get("server_round", 1))
        losses = train(
            self.model,
            self.data.x_train,
            self.data.y_train,
            epochs=epochs,
            batch_size=int(self.cfg["train"]["batch_size"]),
            lr=float(self.cfg["train"]["lr"]),
            weight_decay=float(self.cfg["train"]["weight_decay"]),
            n_classes=len(self.data.class_names),
            weighting=str(self.cfg["train"]["class_weighting"]),
            seed=int(self.cfg["seed"]) * 1000 + server_round * 10 + self.partition_id,
        )
        train_s = time.perf_counter() - t0
        weights = get_weights(self.model)
        metrics: dict[str, Any] = {
            "partition_id": self.partition_id,
            "train_seconds": train_s,
            "decrypt_seconds": decrypt_s,
            "train_loss": losses["loss_last_epoch"],
        }
        if secure is None:
            return weights, len(self.data.x_train), metrics
        t1 = time.perf_counter()
        arrays, extra = secure.encrypt(weights)
        metrics["encrypt_seconds"] = time.perf_counter() - t1
        metrics.update(extra)
        return arrays, len(self.data.x_train), metrics

    def evaluate(self, parameters: list[np.ndarray], config: dict[str, Any]):
        decrypt_s = self._receive(parameters, config)
        n_classes = len(self.data.class_names)
        cm = confusion(self.model, self.data.x_val, self.data.y_val, n_classes)
        loss = (
            loss_of(self.model, self.data.x_val, self.data.y_val) if len(self.data.x_val) else 0.0
        )
        if config.get("final"):
            self._save_model(str(config.get("run_path", "")))
        return (
            loss,
            len(self.data.x_val),
            {
                "confusion": json.dumps(cm.tolist()),
                "class_names": json.dumps(self.data.class_names),
                "partition_id": self.partition_id,
                "decrypt_seconds": decrypt_s,
            },
        )

    def _save_model(self, run_path: str) -> None:
        """Write this device's self-contained detector (global weights + its own scaler)."""
        base = Path(self.run_dir) if self.run_dir else Path(run_path)
        if not str(base):
            return
        detector = Detector(
            model=self.model,
            feature_names=self.data.feature_names,
            class_names=self.data.class_names,
            classification=self.cfg["classification"]["name"],
            scaler=self.data.scaler,
            meta={
                "hidden": list(self.cfg["model"]["hidden"]),
                "dropout": float(self.cfg["model"]["dropout"]),
                "partition_id": self.partition_id,
                "mode": self.cfg["mode"]["name"],
                "data_source": self.data.source,
                "synthetic": self.data.synthetic,
            },
        )
        detector.save(base / "devices" / f"partition-{self.partition_id}" / "model.pt")
        if self.partition_id == 0:
            detector.save(base / "model.pt")
        log.info("device %d saved its model under %s", self.partition_id, base)


def client_from_context(context: Context) -> FedIDSClient:
    """Build the client from node-config (device facts) and run-config (the experiment)."""
    cfg = to_plain(compose_config(context.run_config))
    node = context.node_config
    try:
        partition_id = int(node["partition-id"])
        num_partitions = int(node["num-partitions"])
    except KeyError as exc:
        raise ValueError(
            f"node-config lacks {exc.args[0]!r}: start the supernode with "
            "--node-config 'partition-id=0 num-partitions=2'"
        ) from exc
    # Encryption-as-a-Service is a per-site choice: node-config overrides the run's mode.eaas_*
    for key in ("eaas-url", "eaas-token-file", "eaas-ca-file", "eaas-fallback-local"):
        if node.get(key) not in (None, ""):
            value = node[key]
            if key == "eaas-fallback-local":
                value = str(value).lower() in ("1", "true", "yes")
            cfg["mode"][key.replace("-", "_")] = value
    return FedIDSClient(
        cfg,
        partition_id,
        num_partitions,
        data_path=str(node["data-path"]) if node.get("data-path") else None,
        key_dir=str(node["key-dir"]) if node.get("key-dir") else None,
        run_dir=str(node["run-dir"]) if node.get("run-dir") else None,
    )


def client_fn(context: Context):
    return client_from_context(context).to_client()


# device_guard: a known error (bad file, config...) becomes one line naming this device
app = ClientApp(client_fn=client_fn, mods=[device_guard])
