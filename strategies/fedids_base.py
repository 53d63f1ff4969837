"""What every fedids strategy does besides averaging models: protocol sums and bookkeeping.

A fedids run has three kinds of things to add up (see :mod:`fedids.protocol`): model
updates (FedAvg), statistics summaries before round 1, and evaluation count vectors after
every round. The plain and the Paillier strategy differ only in *how* they add (in the
clear, or ciphertexts they cannot read); this base holds what they share:

* sampling is capped at ``max_clients`` (the most updates one aggregate may hold) instead of
  aborting a round that got more;
* every rejected update is logged once, naming the device and the reason, and the round
  fails with one line when fewer than ``min_fit_clients`` valid updates remain;
* evaluation results arrive as count vectors in the metrics (``eval``: serialized arrays).

Subclasses implement :meth:`sum_counts` and ``aggregate_fit``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from logging import WARNING
from typing import Any

import numpy as np
from flwr.common import EvaluateIns, FitIns, Parameters, Scalar
from flwr.common.logger import log
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import FedAvg

from fedids import protocol
from fedids.failures import RunStopped, describe_failure


class AggregationError(RunStopped):
    """A round cannot be aggregated safely (one line: how many, why)."""


@dataclass(frozen=True)
class Rejection:
    cid: str
    reason: str


@dataclass(frozen=True)
class Contribution:
    """One device's payload of a protocol sum (statistics or evaluation)."""

    cid: str
    arrays: list[np.ndarray]
    metrics: dict[str, Scalar]


class FedIDSStrategyBase(FedAvg):
    """FedAvg's sampling plus the fedids protocol's sums and checks."""

    def __init__(self, *, run_id: int, max_clients: int, **fedavg_kwargs: Any) -> None:
        super().__init__(**fedavg_kwargs)
        self.run_id = protocol.wire_run_id(run_id)
        self.max_clients = int(max_clients)
        self.last_rejections: list[Rejection] = []
        #: plaintext evaluation totals (plain mode) or encrypted sums (Paillier) per round
        self.eval_sums: dict[int, list[np.ndarray]] = {}

    # -- sampling -----------------------------------------------------------------------------
    def num_fit_clients(self, num_available_clients: int) -> tuple[int, int]:
        n, m = super().num_fit_clients(num_available_clients)
        return min(n, self.max_clients), min(m, self.max_clients)

    def num_evaluation_clients(self, num_available_clients: int) -> tuple[int, int]:
        n, m = super().num_evaluation_clients(num_available_clients)
        return min(n, self.max_clients), min(m, self.max_clients)

    def configure_stats(
        self, stats_pass: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        """Every available device (up to max_clients) contributes to the statistics."""
        clients = list(client_manager.all().values())[: self.max_clients]
        return [(c, FitIns(parameters, {})) for c in clients]

    def configure_report(
        self, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, EvaluateIns]]:
        clients = list(client_manager.all().values())[: self.max_clients]
        return [(c, EvaluateIns(parameters, {})) for c in clients]

    # -- bookkeeping --------------------------------------------------------------------------
    def _reject(self, what: str, server_round: int, cid: str, reason: str) -> None:
        self.last_rejections.append(Rejection(cid, reason))
        log(
            WARNING,
            "round %d: rejected %s from device %s: %s",
            server_round,
            what,
            cid,
            reason,
        )

    def _require(
        self,
        accepted: int,
        total: int,
        needed: int,
        what: str,
        server_round: int,
        failures: Sequence[Any] = (),
    ) -> None:
        if accepted >= max(1, needed):
            return
        reasons = "; ".join(f"device {r.cid}: {r.reason}" for r in self.last_rejections)
        failed = "; ".join(f if isinstance(f, str) else describe_failure(f) for f in failures)
        raise AggregationError(
            f"round {server_round}: {accepted} valid {what} of {total} received, at least "
            f"{needed} needed"
            + (f". Failed: {failed}" if failed else "")
            + (f". Rejected: {reasons}" if reasons else "")
        )

    # -- protocol sums ----------------------------------------------------------------------
    def aggregate_counts(
        self,
        contributions: Sequence[Contribution],
        *,
        kind: int,
        tag: int,
        server_round: int,
        min_needed: int,
        failures: Sequence[Any] = (),
    ) -> list[np.ndarray]:
        """The sum of one kind of count vector (statistics pass ``tag``, evaluation of round
        ``tag``) as a payload for the devices. Callers reset ``last_rejections``."""
        what = "statistics summaries" if kind == protocol.KIND_STATS else "evaluation results"
        seen: set[str] = set()
        unique = []
        for c in contributions:
            if c.cid in seen:
                self._reject(what, server_round, c.cid, "second payload from the same device")
                continue
            seen.add(c.cid)
            unique.append(c)
        unique = unique[: self.max_clients]
        payload, accepted = self.sum_counts(unique, kind=kind, tag=tag, server_round=server_round)
        self._require(accepted, len(contributions), min_needed, what, server_round, failures)
        return payload

    def sum_counts(
        self, contributions: Sequence[Contribution], *, kind: int, tag: int, server_round: int
    ) -> tuple[list[np.ndarray], int]:
        raise NotImplementedError

    def aggregate_evaluate(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, Any]],
        failures: list[Any],
    ) -> tuple[float | None, dict[str, Scalar]]:
        self.last_rejections = []
        contributions = []
        for proxy, res in results:
            raw = (res.metrics or {}).get("eval")
            if not isinstance(raw, bytes):
                self._reject("evaluation", server_round, str(proxy.cid), "no 'eval' payload")
                continue
            try:
                arrays = protocol.bytes_to_arrays(raw)
            except protocol.ProtocolError as exc:
                self._reject("evaluation", server_round, str(proxy.cid), str(exc))
                continue
            contributions.append(Contribution(str(proxy.cid), arrays, dict(res.metrics)))
        self.eval_sums[server_round] = self.aggregate_counts(
            contributions,
            kind=protocol.KIND_EVAL,
            tag=server_round,
            server_round=server_round,
            min_needed=int(self.min_evaluate_clients),
            failures=failures,
        )
        return None, {"evaluate_clients": len(contributions)}
