"""Rounds with the product's own client: plain FedAvg against packed Paillier, interleaved.

Drives ``FedIDSClient.fit`` (decrypt the global model if encrypted, train, encrypt) and the
strategies' ``aggregate_fit`` directly with ``FitRes`` objects (no Ray, no gRPC). Clients
run one after the other here; on real devices they run in parallel, so a round's time is
the slowest client's ``fit`` plus the server's aggregation. Round 1 (plaintext initial
model) is a warm-up; the figures are medians of the steady-state rounds, whose ``fit``
includes decrypting the previous aggregate. This part follows the product's client (still
protocol v1 until the lead's new client lands); the crypto-only figures do not depend on it.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fedids.bench.common import now
from fedids.crypto.codec import CodecParams


@dataclass
class Proxy:
    """Stands in for Flower's ClientProxy: the strategies only read ``cid``."""

    cid: str


def compose(mode: str, settings: Any, extra: Sequence[str] = ()) -> dict[str, Any]:
    from fedids.config import compose_config, to_plain

    overrides = [
        f"federation.num_partitions={settings.clients}",
        f"federation.min_fit_clients={settings.clients}",
        f"federation.min_available_clients={settings.clients}",
        f"seed={settings.seed}",
        f"local_epochs={settings.local_epochs}",
    ]
    if settings.rows:
        overrides.append(f"dataset.rows={settings.rows}")
    if mode == "paillier":
        overrides += [f"mode.key_bits={settings.key_bits}", f"mode.workers={settings.workers}"]
    return to_plain(compose_config({"mode": mode}, overrides + list(extra)))


class RoundRunner:
    """Drives one mode's rounds with FedIDSClient, one round per :meth:`step`, so that the
    modes can be interleaved round by round and see the same background load."""

    def __init__(self, cfg: dict[str, Any], settings: Any, key_dir: str | None):
        from flwr.server.strategy import FedAvg

        from fedids.client_app import FedIDSClient

        self.cfg, self.settings, self.key_dir = cfg, settings, key_dir
        k = settings.clients
        self.paillier = cfg["mode"]["name"] == "paillier"
        if self.paillier:
            from strategies.paillier_fedavg import PaillierFedAvg

            self.strategy: Any = PaillierFedAvg(
                codec=CodecParams.from_config(cfg["mode"]),
                min_fit_clients=k,
                min_available_clients=k,
            )
        else:
            self.strategy = FedAvg(min_fit_clients=k, min_available_clients=k)
        self._client_cls = FedIDSClient
        self.params = self._clients()[0].get_parameters({})
        self.rounds: list[dict[str, Any]] = []

    def _clients(self) -> list[Any]:  # Flower builds a fresh client for every message
        k = self.settings.clients
        return [self._client_cls(self.cfg, i, k, key_dir=self.key_dir) for i in range(k)]

    def step(self, rnd: int) -> None:
        from flwr.common import (
            Code,
            FitRes,
            Status,
            ndarrays_to_parameters,
            parameters_to_ndarrays,
        )

        config = {"server_round": rnd, "local_epochs": self.settings.local_epochs}
        results, fit_s, metrics = [], [], []
        for i, c in enumerate(self._clients()):
            t0 = now()
            arrays, n, m = c.fit(self.params, config)
            fit_s.append(now() - t0)
            metrics.append(m)
            res = FitRes(Status(Code.OK, ""), ndarrays_to_parameters(arrays), n, m)
            results.append((Proxy(cid=str(i)), res))
        t0 = now()
        aggregated, _ = self.strategy.aggregate_fit(rnd, results, [])
        aggregate_s = now() - t0
        self.params = parameters_to_ndarrays(aggregated)
        self.rounds.append(
            {
                "round": rnd,
                "round_seconds": max(fit_s) + aggregate_s,
                "client_fit_seconds": fit_s,
                "aggregate_seconds": aggregate_s,
                "train_seconds": [float(m.get("train_seconds", 0.0)) for m in metrics],
                "decrypt_seconds": [float(m.get("decrypt_seconds", 0.0)) for m in metrics],
                "encrypt_seconds": [float(m.get("encrypt_seconds", 0.0)) for m in metrics],
                "upload_bytes_per_client": [
                    sum(len(t) for t in r.parameters.tensors)
                    + sum(len(str(a)) + len(str(b)) for a, b in r.metrics.items())
                    for _, r in results
                ],
                "num_examples": [r.num_examples for _, r in results],
            }
        )

    def summary(self) -> dict[str, Any]:
        """Medians over the steady-state rounds (round 1, on the plaintext init, excluded)."""
        steady = self.rounds[1:] or self.rounds

        def med(key: str, fn: Callable[[Any], float] = float) -> float:
            return statistics.median(fn(r[key]) for r in steady)

        return {
            "mode": self.cfg["mode"]["name"],
            "precompute": bool(self.cfg["mode"].get("precompute")) if self.paillier else None,
            "rounds": self.rounds,
            "round_seconds": med("round_seconds"),
            "train_seconds": med("train_seconds", max),
            "decrypt_seconds": med("decrypt_seconds", max),
            "encrypt_seconds": med("encrypt_seconds", max),
            "aggregate_seconds": med("aggregate_seconds"),
            "upload_bytes_per_client": max(steady[-1]["upload_bytes_per_client"]),
            "num_examples": steady[-1]["num_examples"],
        }
