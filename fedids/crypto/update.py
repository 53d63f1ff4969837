"""Client-side facade: model weights -> encrypted wire arrays, and aggregate -> weights.

``UpdateEncryptor`` clips, quantizes, packs and encrypts a list of float arrays (the FULL
model weights, see docs/paillier.md); ``AggregateDecryptor`` turns the server's weighted
homomorphic sum back into the sample-weighted average model. Both use the process-wide
worker pool for their ``workers`` count unless given a pool; nothing here imports torch
or flwr.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fedids.crypto import codec, vector, wire
from fedids.crypto.codec import CodecParams
from fedids.crypto.keys import PrivateKey, PublicKey, fingerprint, key_id
from fedids.crypto.wire import Header, WireFormatError, is_encrypted_payload

__all__ = [
    "AggregateDecryptor",
    "EncryptStats",
    "UpdateEncryptor",
    "WireFormatError",
    "is_encrypted_payload",
]


def _flatten(arrays: Sequence[np.ndarray]) -> np.ndarray:
    if not arrays:
        raise ValueError("no arrays to encrypt")
    return np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in arrays])


def _check_key_size(n: int, params: CodecParams) -> None:
    if n.bit_length() != params.key_bits:
        raise ValueError(
            f"the key has {n.bit_length()} bits but the codec expects key_bits={params.key_bits}"
        )


@dataclass
class EncryptStats:
    """What the last :meth:`UpdateEncryptor.encrypt` did (for metrics and the bench)."""

    n_values: int = 0
    n_ciphertexts: int = 0
    clipped: int = 0
    precomputed_obfuscators: int = 0
    seconds: float = 0.0


class UpdateEncryptor:
    """Encrypts model updates under one public key with the codec ``params``."""

    def __init__(
        self,
        public_key: PublicKey,
        params: CodecParams,
        workers: int = 2,
        *,
        pool: vector.WorkerPool | None = None,
        private_key: PrivateKey | None = None,
    ) -> None:
        """``private_key`` is optional: a device holds it anyway (it decrypts the aggregate),
        and with it the obfuscators are computed by the CRT, about 3-4x faster. Encryption
        services and tests without it use the public-key-only path."""
        params.validate()
        _check_key_size(public_key.n, params)
        factors = None
        if private_key is not None:
            if private_key.public_key.n != public_key.n:
                raise ValueError("private_key does not belong to public_key")
            factors = (int(private_key.p), int(private_key.q))
        self.public_key = public_key
        self.params = params
        self.key_id = key_id(fingerprint(public_key))
        if pool is None:  # even one worker computes in the background while the device trains
            pool = vector.shared_pool(max(1, workers))
        self._store = vector.ObfuscatorStore(public_key.n, pool, factors)
        self.last_stats = EncryptStats()

    @property
    def last_clipped(self) -> int:
        """Values clipped to [-clip, clip] in the last update (report it: many = bad clip)."""
        return self.last_stats.clipped

    def start_precompute(self, n_values: int) -> None:
        """Start computing the obfuscators for an update of ``n_values`` values (non-blocking).

        Call it when local training starts; :meth:`encrypt` then only multiplies (and
        computes whatever is still missing).
        """
        self._store.start(self.params.n_ciphertexts(int(n_values)))

    def wait_precompute(self) -> None:
        """Block until the obfuscators started by :meth:`start_precompute` are ready."""
        self._store.wait()

    def encrypt(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Wire arrays ``[int64 header, uint8 ciphertexts]`` for the weights in ``arrays``."""
        t0 = time.perf_counter()
        flat = _flatten(arrays)
        quanta, clipped = codec.quantize(flat, self.params)
        plaintexts = codec.pack(quanta, self.params)
        obfuscators, precomputed = self._store.take(len(plaintexts))
        ciphertexts = vector.encrypt_many(self.public_key.n, plaintexts, obfuscators)
        header = Header.for_update(self.params, flat.size, self.key_id)
        out = wire.pack_payload(header, ciphertexts)
        self.last_stats = EncryptStats(
            n_values=flat.size,
            n_ciphertexts=len(ciphertexts),
            clipped=clipped,
            precomputed_obfuscators=precomputed,
            seconds=time.perf_counter() - t0,
        )
        return out

    def close(self) -> None:
        """Drop unused obfuscators (the shared pool stays up for the next round)."""
        self._store.cancel()

    def __enter__(self) -> UpdateEncryptor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AggregateDecryptor:
    """Decrypts the server's aggregate into the weighted-average model (float32 arrays)."""

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
        if pool is None and workers > 1:
            pool = vector.shared_pool(workers)
        self._pool = pool

    def __repr__(self) -> str:  # never show key material
        return f"AggregateDecryptor(key_id={self.key_id:#x}, params={self.params})"

    def decrypt(
        self, arrays: Sequence[np.ndarray], shapes: Sequence[Sequence[int]]
    ) -> list[np.ndarray]:
        """Float32 arrays of ``shapes`` from an aggregate ``[header, ciphertexts]``.

        Refuses (``WireFormatError``) a payload for another key or codec, a size that does
        not match ``shapes``, a client update instead of an aggregate, or ciphertexts out
        of range, instead of returning a silently wrong model.
        """
        header, ciphertexts = wire.unpack_payload(arrays)
        header.check_against(self.params)
        if header.key_id != self.key_id:
            raise WireFormatError("aggregate was encrypted under another public key")
        if not header.is_aggregate:
            raise WireFormatError("payload is a single client update, not an aggregate")
        sizes = [int(np.prod(s, dtype=np.int64)) for s in shapes]
        if header.n_values != sum(sizes):
            raise WireFormatError(
                f"aggregate holds {header.n_values} values, the model has {sum(sizes)}"
            )
        n2 = self.private_key.public_key.nsquare
        if any(not 0 < c < n2 for c in ciphertexts):
            raise WireFormatError("a ciphertext is out of range [1, n^2)")
        plaintexts = vector.decrypt_many(self.private_key, ciphertexts, self._pool)
        try:
            sums = codec.unpack(plaintexts, header.n_values, self.params)
        except ValueError as exc:
            raise WireFormatError(str(exc)) from None
        limit = self.params.max_quantized * header.weight_sum
        if sums.size and (int(sums.max()) > limit):
            raise WireFormatError("a slot sum exceeds its bound: corrupted or mis-weighted sum")
        flat = codec.dequantize(sums, header.weight_sum, self.params).astype(np.float32)
        out, start = [], 0
        for shape, size in zip(shapes, sizes, strict=True):
            out.append(flat[start : start + size].reshape(tuple(shape)).copy())
            start += size
        return out
