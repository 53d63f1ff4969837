"""Buffered FedAvg over packed Paillier ciphertexts: stale updates weigh less, nothing is read.

Every update is a device's FULL model, pre-weighted by its data share ``n_k/N`` and encrypted
(docs/paillier.md, "Buffered aggregation"). The server checks each one when it arrives with
the synchronous strategy's checks (the run's key, the wire format, no replay), except that its
binding must say it was trained on the version this server sent that device
(``base_version``) for the version after it (``round = base_version + 1``), whichever version
it finally joins. Aggregating raises each update's ciphertexts to its integer staleness
multiplier ``m_k <= max_multiplier`` and multiplies them: the plaintexts add up to
``sum_k m_k (n_k/N) w_k``, and the encrypted share total (``sum_k m_k n_k/N``) and contributor
count travel inside the aggregate, so the devices decode the weighted average exactly and
check how many contributed. The aggregate is bound to its version ``v`` (base ``v - 1``).
"""

from __future__ import annotations

from collections.abc import Sequence

from flwr.common import FitRes, Parameters, ndarrays_to_parameters, parameters_to_ndarrays

from fedids import protocol
from fedids.crypto.binding import Binding
from strategies.buffered_fedavg import BufferedUpdate, UpdateRejected, check_multipliers
from strategies.homomorphic import RejectedUpdate, sum_updates
from strategies.paillier_fedavg import PaillierFedAvg


class PaillierBuffer:
    """Buffered aggregation for :class:`~strategies.paillier_fedavg.PaillierFedAvg`."""

    mode = "paillier"

    def __init__(self, strategy: PaillierFedAvg, max_multiplier: int) -> None:
        codec_max = int(strategy.codec.max_multiplier)
        if int(max_multiplier) > codec_max:
            raise ValueError(
                f"aggregation.max_multiplier={max_multiplier} exceeds the codec's "
                f"mode.max_multiplier={codec_max}: set mode.max_multiplier={max_multiplier} "
                "(devices leave room in every slot for the largest weight the server applies)"
            )
        self.strategy = strategy
        self.max_multiplier = int(max_multiplier)
        self._buffered_digests: set[str] = set()

    def data_weight(self, res: FitRes) -> float:
        """Every device the same: no record count reaches the server in Paillier mode."""
        return 1.0

    def check(
        self, cid: str, res: FitRes, base_version: int, bound_to: int | None = None
    ) -> BufferedUpdate:
        """``bound_to``: the version the update must be encrypted for (default base + 1)."""
        s = self.strategy
        try:
            arrays = parameters_to_ndarrays(res.parameters)
        except Exception:  # noqa: BLE001 - the device's fault
            raise UpdateRejected("parameters do not decode") from None
        expect = Binding(
            run_id=s.run_id,
            round=int(bound_to) if bound_to else int(base_version) + 1,
            base_version=int(base_version),
            kind=protocol.KIND_MODEL,
            tag=0,
        )
        metrics = dict(res.metrics or {})
        try:
            update = s._parse(cid, arrays, metrics, expect)
        except (RejectedUpdate, ValueError) as exc:
            raise UpdateRejected(str(exc)) from None
        if update.digest in self._buffered_digests:
            raise UpdateRejected("replay: these exact ciphertexts are already in the buffer")
        if s.pinned_n_values is not None and update.n_values != s.pinned_n_values:
            raise UpdateRejected(f"{update.n_values} values, expected {s.pinned_n_values}")
        self._buffered_digests.add(update.digest)
        return BufferedUpdate(
            cid=cid,
            base_version=int(base_version),
            num_examples=1,  # the share is inside the encryption: no count reaches the server
            upload_bytes=0,
            metrics=metrics,
            payload=update,
        )

    def aggregate(
        self, version: int, updates: Sequence[BufferedUpdate], multipliers: Sequence[int]
    ) -> Parameters:
        check_multipliers(updates, multipliers, self.max_multiplier)
        s = self.strategy
        parsed = [u.payload for u in updates]
        if len({p.n_values for p in parsed}) != 1:
            raise ValueError("buffered updates differ in size: cannot be summed")
        binding = Binding(
            run_id=s.run_id,
            round=int(version),
            base_version=int(version) - 1,
            kind=protocol.KIND_MODEL,
            tag=0,
        )
        payload = sum_updates(parsed, [int(m) for m in multipliers], binding=binding)
        digests = {p.digest for p in parsed}
        s._seen_digests.update(digests)
        self._buffered_digests -= digests
        s.pinned_n_values = parsed[0].n_values
        return ndarrays_to_parameters(payload)
