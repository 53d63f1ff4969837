"""FedAvg over packed Paillier ciphertexts: the server sums what it cannot read.

Why it looks like this
----------------------
Devices pre-weight their full model by their share ``n_k/N`` of the federation's records
(``N`` comes from the statistics phase, itself summed under encryption) and encrypt it, so
the server only has to *add*: FedAvg's weights are exact and no device's record count
travels in the clear. Statistics summaries and evaluation count vectors are added the
same way. The server holds the public key only; it never decrypts and imports no torch.

What it checks, for every payload (a failed check rejects that payload, with one line
naming the device and the reason, and the round goes on if enough valid ones remain):

* the metrics name a key of ``codec.key_bits`` bits whose fingerprint is right, and it is
  THE run's key: ``expected_fingerprint`` (required in a deployment), or in a simulation
  the key of the run's first valid payload (all simulated devices share one key made in
  the run directory);
* the wire payload is structurally sound for the codec (``strategies.homomorphic``:
  header, shapes, every ciphertext in Z*_{n^2});
* its binding is this run, this round and the expected kind (a payload of another run or
  round, or a statistics vector sent as a model, is refused) and its ciphertext digest was
  never seen before in the run (a replayed update under another device id is refused);
* one payload per device per round, at most ``max_clients`` of them summed (the codec's
  headroom), all of the same length.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from flwr.common import (
    FitRes,
    Parameters,
    Scalar,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.common.logger import log
from flwr.server.client_proxy import ClientProxy

from fedids import protocol
from fedids.crypto.binding import Binding
from fedids.crypto.codec import CodecParams
from fedids.crypto.keys import fingerprint_of_n
from strategies.fedids_base import AggregationError, Contribution, FedIDSStrategyBase
from strategies.homomorphic import RejectedUpdate, parse_update, sum_updates


class PaillierAggregationError(AggregationError):
    """The encrypted round cannot be aggregated safely."""


class PaillierFedAvg(FedIDSStrategyBase):
    """Share-weighted FedAvg computed homomorphically on packed Paillier ciphertexts."""

    def __init__(
        self,
        *,
        codec: CodecParams,
        run_id: int,
        expected_fingerprint: str | None = None,
        **fedavg_kwargs: Any,
    ) -> None:
        if fedavg_kwargs.get("evaluate_fn") is not None:
            raise ValueError(
                "PaillierFedAvg cannot evaluate centrally: the server never sees the model"
            )
        self.codec = codec.validate()
        super().__init__(run_id=run_id, max_clients=self.codec.max_clients, **fedavg_kwargs)
        self.expected_fingerprint = (
            expected_fingerprint.strip().lower() if expected_fingerprint else None
        )
        self.run_fingerprint: str | None = self.expected_fingerprint
        self.run_n: int | None = None
        self.pinned_n_values: int | None = None
        self._seen_digests: set[str] = set()

    def __repr__(self) -> str:
        return f"PaillierFedAvg(run_id={self.run_id}, codec={self.codec})"

    # -- the run's key ------------------------------------------------------------------------
    def _key_of(self, metrics: dict[str, Scalar]) -> tuple[int, str]:
        n_hex, fp = metrics.get("pubkey_n"), metrics.get("fingerprint")
        if not isinstance(n_hex, str) or not isinstance(fp, str):
            raise RejectedUpdate("metrics lack 'pubkey_n'/'fingerprint' (not a Paillier device?)")
        try:
            n = int(n_hex, 16)
        except ValueError:
            raise RejectedUpdate("metric 'pubkey_n' is not a hex integer") from None
        if n.bit_length() != self.codec.key_bits or n % 2 == 0:
            raise RejectedUpdate(
                f"public key has {n.bit_length()} bits (an odd {self.codec.key_bits}-bit "
                "modulus expected)"
            )
        if fp.lower() != fingerprint_of_n(n):
            raise RejectedUpdate("metric 'fingerprint' does not match 'pubkey_n'")
        fp = fp.lower()
        if self.run_fingerprint is None:
            self.run_fingerprint, self.run_n = fp, n  # simulation: the run's first key
        if fp != self.run_fingerprint:
            why = "expected_fingerprint" if self.expected_fingerprint else "the run's key"
            raise RejectedUpdate(
                f"encrypted under another public key (fingerprint {fp[:16]}..., "
                f"{why} {self.run_fingerprint[:16]}...)"
            )
        self.run_n = n
        return n, fp

    def _parse(
        self, cid: str, arrays: list[np.ndarray], metrics: dict[str, Scalar], expect: Binding
    ) -> Any:
        n, _ = self._key_of(metrics)
        update = parse_update(arrays, params=self.codec, n=n, expect=expect)
        if update.digest in self._seen_digests:
            raise RejectedUpdate("replay: these exact ciphertexts were already received")
        return update

    def _sum(
        self,
        items: Sequence[tuple[str, list[np.ndarray], dict[str, Scalar]]],
        expect: Binding,
        what: str,
        server_round: int,
    ) -> tuple[list[np.ndarray], int]:
        accepted: list[tuple[str, Any]] = []
        seen: set[str] = set()
        for cid, arrays, metrics in items:
            if cid in seen:
                self._reject(what, server_round, cid, "second payload from the same device")
                continue
            try:
                update = self._parse(cid, arrays, metrics, expect)
            except (RejectedUpdate, ValueError) as exc:
                self._reject(what, server_round, cid, str(exc))
                continue
            seen.add(cid)
            accepted.append((cid, update))
        if not accepted:
            return [], 0
        pinned = self.pinned_n_values if expect.kind == protocol.KIND_MODEL else None
        size = pinned if pinned is not None else accepted[0][1].n_values
        kept = []
        for cid, u in accepted:
            if u.n_values != size:
                self._reject(what, server_round, cid, f"{u.n_values} values, expected {size}")
            elif len(kept) >= self.max_clients:
                self._reject(
                    what,
                    server_round,
                    cid,
                    f"more than max_clients={self.max_clients} payloads this round (the "
                    "codec's headroom); not summed",
                )
            else:
                kept.append(u)
        if not kept:
            return [], 0
        payload = sum_updates(kept, [1] * len(kept), binding=expect)
        self._seen_digests.update(u.digest for u in kept)
        if expect.kind == protocol.KIND_MODEL:
            self.pinned_n_values = kept[0].n_values
        return payload, len(kept)

    # -- model rounds ----------------------------------------------------------------------------
    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[Any],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        self.last_rejections = []
        items = []
        for proxy, res in results:
            try:
                arrays = parameters_to_ndarrays(res.parameters)
            except Exception:  # noqa: BLE001 - the device's fault
                self._reject("update", server_round, str(proxy.cid), "parameters do not decode")
                continue
            items.append((str(proxy.cid), arrays, dict(res.metrics or {})))
        expect = Binding(
            run_id=self.run_id,
            round=server_round,
            base_version=server_round - 1,
            kind=protocol.KIND_MODEL,
            tag=0,
        )
        payload, accepted = self._sum(items, expect, "update", server_round)
        self._require(
            accepted,
            len(results),
            int(self.min_fit_clients),
            "encrypted updates",
            server_round,
            failures,
        )
        log(
            20,
            "round %d: summed %d encrypted updates (%d rejected)",
            server_round,
            accepted,
            len(self.last_rejections),
        )
        return ndarrays_to_parameters(payload), {
            "fit_clients": accepted,
            "rejected": len(self.last_rejections),
            "paillier_key_fingerprint": self.run_fingerprint or "",
        }

    def sum_counts(
        self, contributions: Sequence[Contribution], *, kind: int, tag: int, server_round: int
    ) -> tuple[list[np.ndarray], int]:
        round_ = 0 if kind == protocol.KIND_STATS else tag
        expect = Binding(run_id=self.run_id, round=round_, base_version=0, kind=kind, tag=tag)
        what = "statistics" if kind == protocol.KIND_STATS else "evaluation"
        items = [(c.cid, c.arrays, c.metrics) for c in contributions]
        return self._sum(items, expect, what, server_round)

    def evaluate(
        self, server_round: int, parameters: Parameters
    ) -> tuple[float, dict[str, Scalar]] | None:
        """No central evaluation: the server holds only ciphertexts."""
        return None
