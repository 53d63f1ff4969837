"""Buffered FedAvg: check one update when it arrives, add a buffer of them with integer weights.

A buffered run (:mod:`fedids.server.buffered`) checks each update as it arrives (so a bad one
is named at once and never occupies the buffer) and later adds whatever the buffer holds,
each update weighted by an integer staleness multiplier ``m`` on top of its data share. Both
modes compute the same average, ``sum_k m_k n_k w_k / sum_k m_k n_k``:

* plain: the server sees ``n_k`` and the weights and averages them in the clear;
* Paillier: the device has already multiplied its FULL model by its share ``n_k/N`` inside
  the encryption; the server raises each update's ciphertexts to ``m_k`` and multiplies them
  (adding plaintexts), never decrypting; the devices decode by the encrypted share total
  ``sum_k m_k n_k/N``. ``m_k <= max_multiplier`` keeps every slot within the codec's
  no-overflow bound, and the update's binding must say it was trained on the version the
  server sent it (``base_version``), for the run's next version (``round = base + 1``).

The strategy objects (:class:`~strategies.plain_fedavg.PlainFedAvg`,
:class:`~strategies.paillier_fedavg.PaillierFedAvg`) keep doing the statistics and
evaluation sums; the adapters here only add their buffered model aggregation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from flwr.common import FitRes, Parameters

from strategies.fedids_base import FedIDSStrategyBase
from strategies.plain_fedavg import PlainFedAvg


class UpdateRejected(ValueError):
    """An update the buffer must not hold (one line: why)."""


@dataclass
class BufferedUpdate:
    """One accepted update waiting in the buffer."""

    cid: str
    base_version: int
    num_examples: int  # plain: the device's training records; Paillier: 1 (inside the shares)
    upload_bytes: int
    metrics: dict[str, Any]
    payload: Any = field(repr=False, default=None)  # plain arrays / parsed Paillier update
    rebound: bool = False  # re-based by its device for a later version than first made for
    local_epochs: int = 0  # local epochs the server asked for (0: not known)


class BufferAggregator(Protocol):
    mode: str

    def data_weight(self, res: FitRes) -> float: ...

    def check(self, cid: str, res: FitRes, base_version: int, bound_to: int) -> BufferedUpdate: ...

    def aggregate(
        self, version: int, updates: Sequence[BufferedUpdate], multipliers: Sequence[int]
    ) -> Parameters: ...


def check_multipliers(updates: Sequence[Any], multipliers: Sequence[int], cap: int) -> None:
    if len(updates) != len(multipliers) or not updates:
        raise ValueError(f"{len(multipliers)} multipliers for {len(updates)} updates")
    if any(not 1 <= int(m) <= cap for m in multipliers):
        raise ValueError(f"staleness multipliers {list(multipliers)} outside [1, {cap}]")


class PlainBuffer:
    """Buffered FedAvg in the clear: weights ``n_k * m_k``."""

    mode = "plain"

    def __init__(self, strategy: PlainFedAvg, max_multiplier: int) -> None:
        self.strategy = strategy
        self.max_multiplier = int(max_multiplier)

    def data_weight(self, res: FitRes) -> float:
        """The device's record count (BFL weights response times by data size)."""
        return float(min(max(int(res.num_examples), 1), self.strategy.max_num_examples))

    def check(self, cid: str, res: FitRes, base_version: int, bound_to: int = 0) -> BufferedUpdate:
        """``bound_to`` is unused: a plaintext update is not bound to a version."""
        arrays, reason = self.strategy.check_update(res)
        if reason is not None:
            raise UpdateRejected(reason)
        return BufferedUpdate(
            cid=cid,
            base_version=int(base_version),
            num_examples=int(res.num_examples),
            upload_bytes=0,
            metrics=dict(res.metrics or {}),
            payload=arrays,
        )

    def aggregate(
        self, version: int, updates: Sequence[BufferedUpdate], multipliers: Sequence[int]
    ) -> Parameters:
        check_multipliers(updates, multipliers, self.max_multiplier)
        weighted: list[tuple[list[np.ndarray], int]] = [
            (u.payload, u.num_examples * int(m)) for u, m in zip(updates, multipliers, strict=True)
        ]
        return self.strategy.weighted_average(weighted)


def buffer_aggregator(
    strategy: FedIDSStrategyBase, aggregation: Mapping[str, Any]
) -> BufferAggregator:
    """The buffered aggregation for ``strategy``'s mode (refuses weights the codec cannot hold)."""
    max_multiplier = int(aggregation.get("max_multiplier", 1))
    if isinstance(strategy, PlainFedAvg):
        return PlainBuffer(strategy, max_multiplier)
    from strategies.paillier_buffer import PaillierBuffer

    return PaillierBuffer(strategy, max_multiplier)  # type: ignore[arg-type]
