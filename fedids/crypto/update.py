"""Device side: model weights and count vectors -> encrypted wire arrays, aggregates -> values.

:class:`UpdateEncryptor` encrypts (protocol v2, docs/paillier.md): ``encrypt_model`` takes
the FULL weights pre-weighted by the device's share ``n_k/N`` (so the server only adds and
FedAvg weights are exact), ``encrypt_counts`` takes non-negative integer vectors (federated
statistics, confusion matrices). :class:`AggregateDecryptor` decrypts the server's sums and
refuses (``WireFormatError``, one line) anything honest contributors cannot have produced:
another key, codec or binding, a forged or replayed sum, too few contributors, a share total
or a slot over its bound. Both use the process-wide worker pool unless given one; nothing here
imports torch or flwr.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fedids.crypto import vector, wire
from fedids.crypto.binding import Binding, binding_tag, tag_key_from_factors
from fedids.crypto.codec import CodecParams
from fedids.crypto.keys import PrivateKey, PublicKey, fingerprint, is_admissible, key_id
from fedids.crypto.layout import DecodeError
from fedids.crypto.wire import WireFormatError, WireHeader, is_encrypted_payload

__all__ = [
    "AggregateDecryptor",
    "AggregateInfo",
    "Binding",
    "EncryptStats",
    "UpdateEncryptor",
    "WireFormatError",
    "is_encrypted_payload",
]


def _flatten(arrays: Sequence[np.ndarray]) -> np.ndarray:
    if not len(arrays):
        raise ValueError("no arrays to encrypt")
    return np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in arrays])


def _check_key_size(n: int, params: CodecParams) -> None:
    if n.bit_length() != params.key_bits:
        raise ValueError(
            f"the key has {n.bit_length()} bits but the codec expects key_bits={params.key_bits}"
        )


@dataclass
class EncryptStats:
    """What the last encryption did (for metrics and the bench)."""

    n_values: int = 0
    n_ciphertexts: int = 0
    clipped: int = 0
    precomputed_obfuscators: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class AggregateInfo:
    """What a device learns about an aggregate besides its values (all from decryption)."""

    contributors: int  # from the ENCRYPTED per-update count (not the header's claim)
    share_total: float  # sum of multiplier_k * share_k (model aggregates; 0.0 for counts)
    binding: Binding  # the header's binding; run, round, kind, tag authenticated by the tag
    multiplier_total: int = 0  # sum of the server's multipliers (model aggregates)
    error_bound: float = 0.0  # largest |value - exact weighted average| (model aggregates)


class UpdateEncryptor:
    """Encrypts one device's payloads under one public key with the codec ``params``."""

    def __init__(
        self,
        public_key: PublicKey,
        params: CodecParams,
        workers: int = 2,
        *,
        pool: vector.WorkerPool | None = None,
        private_key: PrivateKey | None = None,
        obfuscators: str = "auto",
    ) -> None:
        """``private_key`` is optional: a device holds it anyway (it decrypts the aggregate);
        with it the obfuscators are cheaper and the encryptor computes the binding tags
        itself. Without it (an encryption service) every call must be given the ``tag``
        the device computed (:meth:`AggregateDecryptor.binding_tag`). ``obfuscators``:
        ``"fixed-base"`` (``h_s^a``, short ``a``; docs/paillier.md "Obfuscators"),
        ``"classic"`` (``r^n``), or ``"auto"``: fixed-base unless the private key shows a
        modulus its security argument does not cover (keys made before admissible key
        generation), then classic."""
        params.validate()
        _check_key_size(public_key.n, params)
        factors = None
        self._tag_key: bytes | None = None
        if private_key is not None:
            if private_key.public_key.n != public_key.n:
                raise ValueError("private_key does not belong to public_key")
            factors = (int(private_key.p), int(private_key.q))
            self._tag_key = tag_key_from_factors(*factors)
        self.public_key = public_key
        self.params = params
        self.key_id = key_id(fingerprint(public_key))
        if pool is None:  # even one worker computes in the background while the device trains
            pool = vector.shared_pool(max(1, workers))
        if obfuscators == "auto":
            usable = factors is None or is_admissible(*factors)
            obfuscators = "fixed-base" if usable else "classic"
        self.obfuscators = obfuscators
        self._store = vector.ObfuscatorStore(public_key.n, pool, factors, obfuscators)
        self.last_stats = EncryptStats()

    def __repr__(self) -> str:  # never show key material
        return f"UpdateEncryptor(key_id={self.key_id:#x}, params={self.params})"

    @property
    def last_clipped(self) -> int:
        """Values clipped to [-clip, clip] in the last update (report it: many = bad clip)."""
        return self.last_stats.clipped

    def start_precompute(self, n_ciphertexts: int) -> None:
        """Start computing ``n_ciphertexts`` obfuscators in the background (non-blocking).

        Call it when local training starts with ``params.n_model_ciphertexts(n_values)``;
        the encryption then only multiplies (and computes whatever is still missing).
        """
        self._store.start(int(n_ciphertexts))

    def wait_precompute(self) -> None:
        """Block until the obfuscators started by :meth:`start_precompute` are ready."""
        self._store.wait()

    def _tag(self, binding: Binding, tag: int | None) -> int:
        if tag is not None:
            if not isinstance(tag, int) or not 0 <= tag < 1 << 48:
                raise ValueError("binding tag must be an integer in [0, 2**48)")
            return tag
        if self._tag_key is None:
            raise ValueError(
                "this encryptor holds no private key: pass the binding tag the device computed"
            )
        return binding_tag(self._tag_key, binding)

    def _seal(
        self, plaintexts: list[int], header: WireHeader, n_values: int, clipped: int, t0: float
    ) -> list[np.ndarray]:
        obfuscators, precomputed = self._store.take(len(plaintexts))
        ciphertexts = vector.encrypt_many(self.public_key.n, plaintexts, obfuscators)
        out = wire.encode_payload(header, ciphertexts)
        self.last_stats = EncryptStats(
            n_values=n_values,
            n_ciphertexts=len(ciphertexts),
            clipped=clipped,
            precomputed_obfuscators=precomputed,
            seconds=time.perf_counter() - t0,
        )
        return out

    def encrypt_model(
        self,
        arrays: Sequence[np.ndarray],
        *,
        share: float,
        binding: Binding,
        tag: int | None = None,
    ) -> list[np.ndarray]:
        """Wire arrays ``[int64 header, uint8 ciphertexts]`` for the FULL weights ``arrays``
        pre-weighted by ``share = n_k / N`` in (0, 1]; ``binding.kind`` must be MODEL."""
        t0 = time.perf_counter()
        if binding.kind != Binding.MODEL:
            raise ValueError(f"encrypt_model needs a MODEL binding, got {binding.describe()}")
        flat = _flatten(arrays)
        plaintexts, clipped = self.params.model_layout.encode(flat, share, self._tag(binding, tag))
        header = WireHeader.for_update(self.params, binding, flat.size, self.key_id)
        return self._seal(plaintexts, header, flat.size, clipped, t0)

    def encrypt_counts(
        self, counts: np.ndarray, *, binding: Binding, tag: int | None = None
    ) -> list[np.ndarray]:
        """Wire arrays for a vector of integers in ``[0, 2**count_bits)``, summed unweighted;
        ``binding.kind`` must be STATS or EVAL."""
        t0 = time.perf_counter()
        if binding.kind == Binding.MODEL:
            raise ValueError("encrypt_counts needs a STATS or EVAL binding, not MODEL")
        c = np.asarray(counts)
        plaintexts = self.params.count_layout.encode(c, self._tag(binding, tag))
        header = WireHeader.for_update(self.params, binding, c.size, self.key_id)
        return self._seal(plaintexts, header, c.size, 0, t0)

    def close(self) -> None:
        """Drop unused obfuscators (the shared pool stays up for the next round)."""
        self._store.cancel()

    def __enter__(self) -> UpdateEncryptor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AggregateDecryptor:
    """Decrypts the server's aggregates (model: float32 arrays; counts: int64)."""

    def __init__(
        self,
        private_key: PrivateKey,
        params: CodecParams,
        workers: int = 2,
        *,
        pool: vector.WorkerPool | None = None,
    ) -> None:
        params.validate()
        _check_key_size(private_key.public_key.n, params)
        self.private_key = private_key
        self.params = params
        self.key_id = key_id(fingerprint(private_key.public_key))
        self._tag_key = tag_key_from_factors(int(private_key.p), int(private_key.q))
        if pool is None and workers > 1:
            pool = vector.shared_pool(workers)
        self._pool = pool

    def __repr__(self) -> str:  # never show key material
        return f"AggregateDecryptor(key_id={self.key_id:#x}, params={self.params})"

    def binding_tag(self, binding: Binding) -> int:
        """The keyed tag of ``binding`` (what an encryption service must be given)."""
        return binding_tag(self._tag_key, binding)

    def _open(
        self, arrays: Sequence[np.ndarray], model: bool, n_values: int, expect: Binding | None
    ) -> tuple[WireHeader, list[int]]:
        """Header checks and decryption; every refusal names the binding."""
        if not is_encrypted_payload(arrays):
            raise WireFormatError("parameters are not an encrypted fedids payload")
        header, ciphertexts = wire.decode_payload(arrays)
        where = f"aggregate for {header.binding.describe()}"
        try:
            header.check_against(self.params)
        except WireFormatError as exc:
            raise WireFormatError(f"{where}: {exc}") from None
        if header.key_id != self.key_id:
            raise WireFormatError(f"{where} was encrypted under another public key")
        if not header.is_aggregate:
            raise WireFormatError(f"{where} is a single device's update, not an aggregate")
        if header.binding.is_model != model:
            kind = "model" if model else "count"
            raise WireFormatError(f"{where} is not a {kind} aggregate")
        if expect is not None and header.binding != expect:
            raise WireFormatError(
                f"{where} refused: {header.binding.differences(expect)} (replayed or misrouted)"
            )
        if header.n_values != n_values:
            raise WireFormatError(f"{where} holds {header.n_values} values, expected {n_values}")
        n2 = self.private_key.public_key.nsquare
        if any(not 0 < c < n2 for c in ciphertexts):
            raise WireFormatError(f"{where}: a ciphertext is out of range [1, n^2)")
        return header, vector.decrypt_many(self.private_key, ciphertexts, self._pool)

    def _refuse(self, header: WireHeader, contributors: int, min_contributors: int) -> None:
        where = f"aggregate for {header.binding.describe()}"
        if contributors != header.n_updates:
            raise WireFormatError(
                f"{where}: header claims {header.n_updates} contributors, the encrypted "
                f"count is {contributors}"
            )
        if contributors < min_contributors:
            raise WireFormatError(
                f"{where} refused: {contributors} contributor(s), this device requires at "
                f"least {min_contributors} (min-contributors)"
            )

    def decrypt_model(
        self,
        arrays: Sequence[np.ndarray],
        shapes: Sequence[Sequence[int]],
        *,
        expect: Binding | None = None,
        min_contributors: int = 1,
    ) -> tuple[list[np.ndarray], AggregateInfo]:
        """Float32 arrays of ``shapes`` (the weighted average) and what the sum says."""
        sizes = [int(np.prod(s, dtype=np.int64)) for s in shapes]
        header, plaintexts = self._open(arrays, True, sum(sizes), expect)
        layout = self.params.model_layout
        try:
            sums, slots = layout.read(plaintexts, header.n_values)
            layout.check(sums, slots, self.binding_tag(header.binding))
        except DecodeError as exc:
            raise WireFormatError(f"aggregate for {header.binding.describe()}: {exc}") from None
        self._refuse(header, sums.contributors, min_contributors)
        flat = layout.average(slots, sums.share_field).astype(np.float32)
        out, start = [], 0
        for shape, size in zip(shapes, sizes, strict=True):
            out.append(flat[start : start + size].reshape(tuple(shape)).copy())
            start += size
        info = AggregateInfo(
            contributors=sums.contributors,
            share_total=sums.share_field / (1 << 32),
            binding=header.binding,
            multiplier_total=sums.multiplier_total,
            error_bound=layout.error_bound(sums.share_field, sums.multiplier_total),
        )
        return out, info

    def decrypt_counts(
        self,
        arrays: Sequence[np.ndarray],
        n_counts: int,
        *,
        expect: Binding | None = None,
        min_contributors: int = 1,
    ) -> tuple[np.ndarray, AggregateInfo]:
        """The int64 sum of the devices' count vectors and what the sum says."""
        header, plaintexts = self._open(arrays, False, int(n_counts), expect)
        layout = self.params.count_layout
        try:
            count, tag_field, counts = layout.read(plaintexts, header.n_values)
            layout.check(count, tag_field, counts, self.binding_tag(header.binding))
        except DecodeError as exc:
            raise WireFormatError(f"aggregate for {header.binding.describe()}: {exc}") from None
        self._refuse(header, count, min_contributors)
        info = AggregateInfo(contributors=count, share_total=0.0, binding=header.binding)
        return counts.copy(), info
