"""Rounds with the product's own devices and server loop: plain FedAvg against packed Paillier.

Drives the in-process federation (:mod:`fedids.sim.inprocess`: the very device code and
:class:`fedids.server.loop.FedIDSServer` a ``flwr run`` runs, without Ray or gRPC), one
round per :meth:`RoundRunner.step`, so the modes can be interleaved round by round and see
the same background load (wall-clock noise on a small VM moves one round's training by
+-20 %, more than the whole Paillier overhead: see ``overhead_breakdown`` in the driver,
which compares the non-training parts). A round is what a federation does per round: every device's
``fit`` (receive the global model, train, encrypt), the server's sum, every device's
``evaluate`` (decrypt the new global model once, score the validation split, encrypt the
counts). Devices run one after the other here; on real devices they run in parallel, so a
round's time is the slowest device's ``fit`` + the sum + the slowest ``evaluate``. Round 1
is a warm-up (process caches, first decryption); the figures are medians of the others.
"""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fedids.bench.common import now


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
    """One mode's federation in-process, advanced one round per :meth:`step`."""

    def __init__(self, cfg: dict[str, Any], settings: Any, key_dir: str | None):
        from fedids.server_app import make_server
        from fedids.sim.inprocess import INPROCESS_RUN_ID, local_federation

        self.cfg, self.settings = cfg, settings
        k = settings.clients
        self.paillier = cfg["mode"]["name"] == "paillier"
        self._calls: list[tuple[str, str, float]] = []
        nodes = [{"key-dir": key_dir} for _ in range(k)] if (self.paillier and key_dir) else None
        manager, _ = local_federation(cfg, k, node_configs=nodes, wrap=self._timed)
        self._tmp = tempfile.TemporaryDirectory(prefix="fedids-bench-")
        self.server = make_server(
            cfg,
            INPROCESS_RUN_ID,
            Path(self._tmp.name) / cfg["mode"]["name"],
            simulation=True,
            client_manager=manager,
        )
        self.server.set_max_workers(1)
        self.server.statistics_phase(None)
        self.rounds: list[dict[str, Any]] = []

    def _timed(self, proxy: Any, method: str, ins: Any, call: Callable[[Any], Any]) -> Any:
        t0 = now()
        res = call(ins)
        self._calls.append((method, str(proxy.cid), now() - t0))
        return res

    @property
    def params(self) -> Any:
        """The last global model (plain mode: float arrays; Paillier: ciphertexts)."""
        from flwr.common import parameters_to_ndarrays

        return parameters_to_ndarrays(self.server.parameters)

    def step(self, rnd: int) -> None:
        self._calls.clear()
        self.server.train_round(rnd, None)
        self.server.evaluate_round(rnd, None)
        costs = self.server._costs[rnd]
        fit_s = [t for m, _, t in self._calls if m == "fit"]
        eval_s = [t for m, _, t in self._calls if m == "evaluate"]
        self.rounds.append(
            {
                "round": rnd,
                "round_seconds": max(fit_s) + costs.aggregate_seconds + max(eval_s),
                "client_fit_seconds": fit_s,
                "client_evaluate_seconds": eval_s,
                "aggregate_seconds": costs.aggregate_seconds,
                "train_seconds": list(costs.train_seconds),
                "decrypt_seconds": list(costs.evaluate_decrypt_seconds),
                "encrypt_seconds": list(costs.encrypt_seconds),
                "upload_bytes_per_client": list(costs.upload_bytes),
            }
        )

    def summary(self) -> dict[str, Any]:
        """Medians over the steady-state rounds (round 1 excluded)."""
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
            # the round's parts (medians): training is the same work in every mode, so what a
            # mode adds shows in the other two even when training time varies from round to
            # round more than the whole difference between the modes
            "train_part_seconds": med("train_seconds", max),
            "fit_besides_training_seconds": statistics.median(
                max(r["client_fit_seconds"]) - max(r["train_seconds"]) for r in steady
            ),
            "evaluate_seconds": med("client_evaluate_seconds", max),
        }

    def close(self) -> None:
        self._tmp.cleanup()
