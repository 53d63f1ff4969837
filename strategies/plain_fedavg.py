"""Plain FedAvg for fedids: weights, statistics and evaluation counts in the clear.

The devices' node-config must allow plaintext (``allow-plain``) for a plain run to get
anywhere on a device that holds a key. The server checks what it can: the model's shapes
and dtypes, finite values, and ``num_examples`` below ``max_num_examples`` (a device
claiming 10^12 records would otherwise own the average).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from flwr.common import FitRes, Parameters, Scalar, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server.client_proxy import ClientProxy

from fedids import protocol
from strategies.fedids_base import Contribution, FedIDSStrategyBase


class PlainFedAvg(FedIDSStrategyBase):
    """Sample-weighted FedAvg over plaintext float32 weights."""

    def __init__(
        self, *, run_id: int, max_clients: int, max_num_examples: int, **fedavg_kwargs: Any
    ) -> None:
        super().__init__(run_id=run_id, max_clients=max_clients, **fedavg_kwargs)
        self.max_num_examples = int(max_num_examples)
        self._shapes: list[tuple[int, ...]] | None = None

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[Any],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        self.last_rejections = []
        accepted: list[tuple[list[np.ndarray], int]] = []
        seen: set[str] = set()
        for proxy, res in results:
            cid = str(proxy.cid)
            if cid in seen:
                arrays, reason = [], "second update from the same device in this round"
            else:
                arrays, reason = self.check_update(res)
            if reason is not None:
                self._reject("update", server_round, cid, reason)
                continue
            seen.add(cid)
            accepted.append((arrays, int(res.num_examples)))
        accepted = accepted[: self.max_clients]
        self._require(
            len(accepted),
            len(results),
            int(self.min_fit_clients),
            "updates",
            server_round,
            failures,
        )
        return self.weighted_average(accepted), {
            "fit_clients": len(accepted),
            "rejected": len(self.last_rejections),
        }

    def check_update(self, res: FitRes) -> tuple[list[np.ndarray], str | None]:
        """One update's weights, or why they cannot be averaged (also used by buffered runs)."""
        if not 1 <= int(res.num_examples) <= self.max_num_examples:
            return [], (
                f"num_examples={res.num_examples} outside [1, {self.max_num_examples}] "
                "(federation.max_num_examples)"
            )
        try:
            arrays = parameters_to_ndarrays(res.parameters)
        except Exception:  # noqa: BLE001 - the device's fault
            return [], "parameters do not decode as numpy arrays"
        return arrays, self._check_weights(arrays)

    def weighted_average(self, weighted: list[tuple[list[np.ndarray], int]]) -> Parameters:
        """Sum of ``weights * arrays`` over the total weight (sample counts, times staleness
        multipliers in a buffered run), in float64, returned as float32."""
        total = sum(n for _, n in weighted)
        avg = [
            np.sum([a[i].astype(np.float64) * (n / total) for a, n in weighted], axis=0).astype(
                np.float32
            )
            for i in range(len(weighted[0][0]))
        ]
        if self._shapes is None:
            self._shapes = [a.shape for a in avg]
        return ndarrays_to_parameters(avg)

    def _check_weights(self, arrays: list[np.ndarray]) -> str | None:
        if not arrays or any(a.dtype != np.float32 for a in arrays):
            return "not a list of float32 arrays (an encrypted update in a plain run?)"
        if self._shapes is not None and [a.shape for a in arrays] != self._shapes:
            return "model shapes differ from the federation's model"
        if not all(np.isfinite(a).all() for a in arrays):
            return "update holds NaN or infinite values"
        return None

    def sum_counts(
        self, contributions: Sequence[Contribution], *, kind: int, tag: int, server_round: int
    ) -> tuple[list[np.ndarray], int]:
        what = "statistics" if kind == protocol.KIND_STATS else "evaluation"
        vecs = []
        length = None
        for c in contributions:
            try:
                vec = protocol.read_plain_counts(
                    c.arrays, kind=kind, tag=tag, run_id=self.run_id, round=None
                )
            except protocol.ProtocolError as exc:
                self._reject(what, server_round, c.cid, str(exc))
                continue
            if length is None:
                length = vec.size
            if vec.size != length:
                self._reject(what, server_round, c.cid, f"{vec.size} counts, others sent {length}")
                continue
            vecs.append(vec)
        if not vecs:
            return [], 0
        total = np.sum(np.stack(vecs), axis=0, dtype=np.int64)
        round_ = 0 if kind == protocol.KIND_STATS else tag
        payload = protocol.plain_counts_payload(
            total, kind=kind, tag=tag, run_id=self.run_id, round=round_
        )
        return payload, len(vecs)
