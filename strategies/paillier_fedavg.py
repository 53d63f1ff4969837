"""FedAvg over packed Paillier ciphertexts: the server sums what it cannot read.

Each client sends ``[int64 header, uint8 ciphertexts]`` (see ``fedids.crypto.wire``) and,
in its FitRes metrics, ``pubkey_n`` (hex) and ``fingerprint`` (SHA-256 hex of n). The
strategy

1. validates every update (one update per client per round; metrics naming a key whose
   fingerprint is right and whose size is ``codec.key_bits``; header matching the codec;
   ciphertext array of the right dtype/shape; every ciphertext in Z*_{n^2});
2. picks the round's key: ``expected_fingerprint`` if configured, else the key pinned in an
   earlier round of this run (trust on first use: the key cannot silently change
   mid-run), else the key most updates use (ties: the earliest update), and rejects
   updates under any other key; likewise the model size (pinned, else the most common);
3. turns ``num_examples`` into integer weights (``fedids.crypto.codec.integer_weights``),
   raises each ciphertext to its client's weight and multiplies them (mod n^2);
4. returns the aggregate with ``weight_sum`` and ``n_contributors`` in its header.

Rejected updates are logged at WARNING with the client's cid and partition_id; the round
completes with the rest if at least ``min_fit_clients`` remain, else
:class:`InsufficientValidUpdatesError` says how many were rejected and why.
It never decrypts and never loads a private key; it imports no torch.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from logging import INFO, WARNING

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
from flwr.server.strategy import FedAvg

from fedids.crypto.codec import CodecParams, integer_weights
from fedids.crypto.keys import fingerprint_of_n, key_id
from fedids.crypto.wire import Header, WireFormatError, is_encrypted_payload, pack_payload
from fedids.crypto.wire import unpack_payload as _unpack
from strategies.homomorphic import ciphertext_problem, weighted_sum


class PaillierAggregationError(RuntimeError):
    """The encrypted round cannot be aggregated safely."""


class InsufficientValidUpdatesError(PaillierAggregationError):
    """Too few valid updates remain after rejecting the bad ones."""


@dataclass(frozen=True)
class Rejection:
    cid: str
    partition_id: str
    reason: str


@dataclass
class _Update:
    cid: str
    partition_id: str
    num_examples: int
    fingerprint: str
    n: int
    header: Header
    ciphertexts: list[int]
    metrics: dict[str, Scalar]


class _Reject(Exception):
    pass


def _partition_id(res: FitRes) -> str:
    value = (res.metrics or {}).get("partition_id")
    return "?" if value is None else str(value)


class PaillierFedAvg(FedAvg):
    """Sample-weighted FedAvg computed homomorphically on packed Paillier ciphertexts."""

    def __init__(
        self,
        *,
        codec: CodecParams,
        expected_fingerprint: str | None = None,
        **fedavg_kwargs: object,
    ) -> None:
        if fedavg_kwargs.get("evaluate_fn") is not None:
            raise ValueError(
                "PaillierFedAvg cannot evaluate centrally: the server never sees the model"
            )
        super().__init__(**fedavg_kwargs)  # type: ignore[arg-type]
        self.codec = codec.validate()
        self.expected_fingerprint = (
            expected_fingerprint.strip().lower() if expected_fingerprint else None
        )
        self.pinned_fingerprint: str | None = None
        self.pinned_n_values: int | None = None
        #: rejections of the last aggregate_fit call (for records and tests)
        self.last_rejections: list[Rejection] = []

    def __repr__(self) -> str:
        return f"PaillierFedAvg(accept_failures={self.accept_failures}, codec={self.codec})"

    # -- validation ------------------------------------------------------------------------
    def _parse(self, proxy: ClientProxy, res: FitRes) -> _Update:
        metrics = dict(res.metrics or {})
        num_examples = res.num_examples
        if not isinstance(num_examples, int | np.integer) or num_examples < 1:
            raise _Reject(f"num_examples={num_examples!r} must be a positive integer")
        n_hex, fp = metrics.get("pubkey_n"), metrics.get("fingerprint")
        if not isinstance(n_hex, str) or not isinstance(fp, str):
            raise _Reject("metrics lack 'pubkey_n'/'fingerprint' (not a Paillier-mode client?)")
        try:
            n = int(n_hex, 16)
        except ValueError:
            raise _Reject("metric 'pubkey_n' is not a hex integer") from None
        if n.bit_length() != self.codec.key_bits or n % 2 == 0:
            raise _Reject(
                f"public key has {n.bit_length()} bits (expected an odd "
                f"{self.codec.key_bits}-bit modulus)"
            )
        if fp.lower() != fingerprint_of_n(n):
            raise _Reject("metric 'fingerprint' does not match 'pubkey_n'")
        try:
            arrays = parameters_to_ndarrays(res.parameters)
        except Exception as exc:  # noqa: BLE001 - any decoding failure is the client's fault
            name = exc.__class__.__name__
            raise _Reject(f"parameters do not decode as numpy arrays ({name})") from None
        if not is_encrypted_payload(arrays):
            raise _Reject("parameters are not a fedids Paillier payload (plaintext update?)")
        try:
            header, ciphertexts = _unpack(arrays)
            header.check_against(self.codec)
        except WireFormatError as exc:
            raise _Reject(str(exc)) from None
        if header.is_aggregate:
            raise _Reject("payload is an aggregate, not a client update")
        if header.key_id != key_id(fingerprint_of_n(n)):
            raise _Reject("header key_id does not match the announced public key")
        problem = ciphertext_problem(ciphertexts, n)
        if problem:
            raise _Reject(problem)
        return _Update(
            cid=str(proxy.cid),
            partition_id=_partition_id(res),
            num_examples=int(num_examples),
            fingerprint=fp.lower(),
            n=n,
            header=header,
            ciphertexts=ciphertexts,
            metrics=metrics,
        )

    def _choose(self, values: list, pinned: object) -> tuple[object, str]:
        """The pinned value if any, else the most common (ties: the earliest)."""
        if pinned is not None:
            return pinned, "pinned"
        counts = Counter(values)
        best = max(counts.values())
        return next(v for v in values if counts[v] == best), "most common this round"

    # -- aggregation -------------------------------------------------------------------------
    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        self.last_rejections = []
        if not results:
            return None, {}
        if not self.accept_failures and failures:
            return None, {}

        rejections: list[Rejection] = []

        def reject(cid: str, pid: str, reason: str) -> None:
            rejections.append(Rejection(cid, pid, reason))
            log(
                WARNING,
                "round %d: rejected update from client cid=%s partition_id=%s: %s",
                server_round,
                cid,
                pid,
                reason,
            )

        updates: list[_Update] = []
        seen: set[str] = set()
        for proxy, res in results:
            cid, pid = str(proxy.cid), _partition_id(res)
            if cid in seen:
                reject(cid, pid, "second update from the same client in this round")
                continue
            seen.add(cid)
            try:
                updates.append(self._parse(proxy, res))
            except _Reject as exc:
                reject(cid, pid, str(exc))

        if updates:
            if self.expected_fingerprint:
                key, why = self.expected_fingerprint, "expected_fingerprint"
            else:
                key, why = self._choose([u.fingerprint for u in updates], self.pinned_fingerprint)
                why = "pinned in an earlier round" if why == "pinned" else why
            for u in [u for u in updates if u.fingerprint != key]:
                reject(
                    u.cid,
                    u.partition_id,
                    f"encrypted under another public key (fingerprint {u.fingerprint[:16]}..., "
                    f"round key {str(key)[:16]}... {why})",
                )
            updates = [u for u in updates if u.fingerprint == key]
        if updates:
            size, why = self._choose([u.header.n_values for u in updates], self.pinned_n_values)
            for u in [u for u in updates if u.header.n_values != size]:
                reject(
                    u.cid,
                    u.partition_id,
                    f"update holds {u.header.n_values} values, the model has {size} ({why})",
                )
            updates = [u for u in updates if u.header.n_values == size]

        self.last_rejections = rejections
        if len(updates) < max(1, self.min_fit_clients):
            reasons = "; ".join(
                f"cid={r.cid} (partition {r.partition_id}): {r.reason}" for r in rejections
            )
            raise InsufficientValidUpdatesError(
                f"round {server_round}: {len(rejections)} of {len(results)} updates rejected, "
                f"{len(updates)} valid remain but min_fit_clients={self.min_fit_clients}"
                + (f"; {len(failures)} clients failed" if failures else "")
                + (f". Rejected: {reasons}" if reasons else "")
            )
        if len(updates) > self.codec.max_clients:
            raise PaillierAggregationError(
                f"round {server_round}: {len(updates)} valid updates exceed "
                f"max_clients={self.codec.max_clients}; summing them could overflow a slot "
                "(raise weight_bits and max_clients together)"
            )

        weights = integer_weights([u.num_examples for u in updates], self.codec)
        n = updates[0].n
        summed = weighted_sum([u.ciphertexts for u in updates], weights, n)
        first = updates[0].header
        header = Header(
            version=first.version,
            key_bits=first.key_bits,
            n_values=first.n_values,
            value_bits=first.value_bits,
            weight_bits=first.weight_bits,
            clip=first.clip,
            slots_per_ciphertext=first.slots_per_ciphertext,
            n_ciphertexts=first.n_ciphertexts,
            weight_sum=sum(weights),
            n_contributors=len(updates),
            key_id=first.key_id,
        )
        parameters = ndarrays_to_parameters(pack_payload(header, summed))
        self.pinned_fingerprint = updates[0].fingerprint
        self.pinned_n_values = first.n_values

        metrics: dict[str, Scalar] = {}
        if self.fit_metrics_aggregation_fn:
            accepted = [(u.num_examples, u.metrics) for u in updates]
            metrics = dict(self.fit_metrics_aggregation_fn(accepted))
        metrics.update(
            {
                "paillier_accepted": len(updates),
                "paillier_rejected": len(rejections),
                "paillier_failures": len(failures),
                "paillier_weight_sum": sum(weights),
                "paillier_key_fingerprint": updates[0].fingerprint,
            }
        )
        log(
            INFO,
            "round %d: summed %d encrypted updates (%d rejected), weights %s",
            server_round,
            len(updates),
            len(rejections),
            weights,
        )
        return parameters, metrics

    def evaluate(
        self, server_round: int, parameters: Parameters
    ) -> tuple[float, dict[str, Scalar]] | None:
        """No central evaluation: the server holds only ciphertexts (or the public init)."""
        return None
