"""Protocol v1 (integer FedAvg weights applied by the server), kept until callers switch.

DELETE this module, and the names re-exported from ``codec``/``wire``/``update`` and
``strategies.homomorphic`` marked "v1", once ``fedids/secure_client.py``,
``strategies/paillier_fedavg.py`` and ``fedids/eaas`` (``/v1/encrypt``) use protocol v2
(see docs/paillier.md). Nothing new should call it.

v1 in one paragraph: a client clips and quantizes every value to ``u`` in
``[0, 2**value_bits - 1]`` and packs slots of ``value_bits + weight_bits`` bits; the server
raises each update to an integer weight ``w_k = max(1, floor(n_k * S / N))`` with
``S = 2**weight_bits - 1 - K`` (so ``sum w_k <= 2**weight_bits - 1``) and multiplies; the
client divides the slot sums by ``sum w_k`` (in the clear in the header). Its error bound is
``step/2 + (spread/2) * sum_k |w_k/W - n_k/N|``: the weights are resolved to
``weight_bits``, which is what protocol v2's pre-weighted shares remove.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from fedids.crypto.packing import pack_slots, unpack_slots

if TYPE_CHECKING:
    from fedids.crypto.codec import CodecParams

VERSION = 1
HEADER_FIELDS = (
    "magic",
    "version",
    "key_bits",
    "n_values",
    "value_bits",
    "weight_bits",
    "clip_bits",  # the float64 clip's IEEE-754 bits, viewed as int64 (exact)
    "slots_per_ciphertext",
    "n_ciphertexts",
    "weight_sum",  # 0 for a client update; sum of integer weights for an aggregate
    "n_contributors",  # 0 for a client update; clients summed for an aggregate
    "key_id",  # first 8 bytes of the public key fingerprint (signed int64)
)
HEADER_LEN = len(HEADER_FIELDS)


# -- quantization and packing --------------------------------------------------------------
def quantize(values: np.ndarray, params: CodecParams) -> tuple[np.ndarray, int]:
    """Clip and quantize a flat float array; returns (uint64 quanta, number of values clipped)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if not np.all(np.isfinite(v)):
        raise ValueError(f"update holds {int(np.sum(~np.isfinite(v)))} NaN/inf values")
    clipped = int(np.count_nonzero((v < -params.clip) | (v > params.clip)))
    x = np.clip(v, -params.clip, params.clip)
    u = np.rint((x + params.clip) / params.step)
    u = np.clip(u, 0, params.max_quantized)  # guards float rounding at the upper edge
    return u.astype(np.uint64), clipped


def dequantize(slot_sums: np.ndarray, weight_sum: int, params: CodecParams) -> np.ndarray:
    """Weighted average of the clients' dequantized values (float64)."""
    if weight_sum < 1:
        raise ValueError(f"weight_sum must be >= 1, got {weight_sum}")
    return slot_sums.astype(np.float64) / float(weight_sum) * params.step - params.clip


def pack(quanta: np.ndarray, params: CodecParams) -> list[int]:
    return pack_slots(quanta, params.slot_bits, params.slots_per_ciphertext)


def unpack(plaintexts: Sequence[int], n_values: int, params: CodecParams) -> np.ndarray:
    return unpack_slots(plaintexts, n_values, params.slot_bits, params.slots_per_ciphertext)


# -- server-side integer weights -----------------------------------------------------------
def integer_weights(num_examples: Sequence[int], params: CodecParams) -> list[int]:
    """``w_k = max(1, floor(n_k * S / N))``, ``S = 2**weight_bits - 1 - K``: sum <= 2**wb - 1."""
    k = len(num_examples)
    if k == 0:
        raise ValueError("no clients to weigh")
    if k > params.max_clients or k > params.max_weight_sum:
        raise ValueError(
            f"{k} clients exceed max_clients={params.max_clients} "
            f"(weight_bits={params.weight_bits} allows sums up to {params.max_weight_sum})"
        )
    if any(int(n) < 1 for n in num_examples):
        raise ValueError("every client must report num_examples >= 1")
    total = sum(int(n) for n in num_examples)
    budget = params.max_weight_sum - k
    weights = [max(1, int(n) * budget // total) for n in num_examples]
    if sum(weights) > params.max_weight_sum:  # cannot happen; never let it pass silently
        raise AssertionError("integer weight invariant broken")
    return weights


def weight_rounding_term(num_examples: Sequence[int], weights: Sequence[int]) -> float:
    """``sum_k |w_k/W - n_k/N|``: how far the integer weights are from the true ones."""
    total_n = sum(num_examples)
    total_w = sum(weights)
    return float(
        sum(abs(w / total_w - n / total_n) for n, w in zip(num_examples, weights, strict=True))
    )


def error_bound(
    params: CodecParams,
    num_examples: Sequence[int],
    weights: Sequence[int] | None = None,
    spread: float | None = None,
) -> float:
    """Largest |decoded average - exact FedAvg of the clipped values| (before float32)."""
    if weights is None:
        weights = integer_weights(num_examples, params)
    if spread is None:
        spread = 2.0 * params.clip
    return params.step / 2.0 + spread / 2.0 * weight_rounding_term(num_examples, weights)


# -- v1 wire header ----------------------------------------------------------------------------
def clip_to_bits(clip: float) -> int:
    return int(np.array([clip], dtype=np.float64).view(np.int64)[0])


def bits_to_clip(bits: int) -> float:
    return float(np.array([bits], dtype=np.int64).view(np.float64)[0])


@dataclass(frozen=True)
class Header:
    """The v1 header (``int64[12]``)."""

    version: int
    key_bits: int
    n_values: int
    value_bits: int
    weight_bits: int
    clip: float
    slots_per_ciphertext: int
    n_ciphertexts: int
    weight_sum: int
    n_contributors: int
    key_id: int

    @classmethod
    def for_update(cls, params: CodecParams, n_values: int, key_id: int) -> Header:
        return cls(
            version=VERSION,
            key_bits=params.key_bits,
            n_values=n_values,
            value_bits=params.value_bits,
            weight_bits=params.weight_bits,
            clip=float(params.clip),
            slots_per_ciphertext=params.slots_per_ciphertext,
            n_ciphertexts=params.n_ciphertexts(n_values),
            weight_sum=0,
            n_contributors=0,
            key_id=key_id,
        )

    @property
    def is_aggregate(self) -> bool:
        return self.weight_sum > 0

    def to_array(self) -> np.ndarray:
        from fedids.crypto.wire import MAGIC

        d = asdict(self)
        d["magic"] = MAGIC
        d["clip_bits"] = clip_to_bits(d.pop("clip"))
        return np.array([d[f] for f in HEADER_FIELDS], dtype=np.int64)

    @classmethod
    def from_array(cls, arr: np.ndarray) -> Header:
        from fedids.crypto.wire import MAGIC, WireFormatError

        a = np.asarray(arr)
        if a.dtype != np.int64 or a.ndim != 1 or a.shape[0] != HEADER_LEN:
            raise WireFormatError(
                f"header must be int64 of shape ({HEADER_LEN},), got {a.dtype} {a.shape}"
            )
        d = {f: int(v) for f, v in zip(HEADER_FIELDS, a.tolist(), strict=True)}
        if d.pop("magic") != MAGIC:
            raise WireFormatError("header magic is not fedids Paillier")
        d["clip"] = bits_to_clip(d.pop("clip_bits"))
        return cls(**d)

    def check_against(self, params: CodecParams) -> None:
        """Raise ``WireFormatError`` unless the header matches ``params`` and itself."""
        from fedids.crypto.wire import WireFormatError

        problems = []
        if self.version != VERSION:
            problems.append(f"version {self.version} (supported: {VERSION})")
        for name in ("key_bits", "value_bits", "weight_bits"):
            if getattr(self, name) != getattr(params, name):
                problems.append(f"{name}={getattr(self, name)} (expected {getattr(params, name)})")
        if self.clip != float(params.clip):
            problems.append(f"clip={self.clip} (expected {params.clip})")
        if self.slots_per_ciphertext != params.slots_per_ciphertext:
            problems.append(
                f"slots_per_ciphertext={self.slots_per_ciphertext} "
                f"(expected {params.slots_per_ciphertext})"
            )
        if self.n_values < 1:
            problems.append(f"n_values={self.n_values}")
        elif self.n_ciphertexts != params.n_ciphertexts(self.n_values):
            problems.append(
                f"n_ciphertexts={self.n_ciphertexts} for {self.n_values} values "
                f"(expected {params.n_ciphertexts(self.n_values)})"
            )
        if not 0 <= self.weight_sum <= params.max_weight_sum:
            problems.append(f"weight_sum={self.weight_sum} (max {params.max_weight_sum})")
        if (self.weight_sum == 0) != (self.n_contributors == 0) or not (
            0 <= self.n_contributors <= self.weight_sum
        ):
            problems.append(
                f"n_contributors={self.n_contributors} inconsistent with "
                f"weight_sum={self.weight_sum}"
            )
        if problems:
            raise WireFormatError("header mismatch: " + "; ".join(problems))


def pack_payload(header: Header, ciphertexts: Sequence[int]) -> list[np.ndarray]:
    from fedids.crypto.wire import ciphertexts_to_array

    if len(ciphertexts) != header.n_ciphertexts:
        raise ValueError(f"{len(ciphertexts)} ciphertexts, header says {header.n_ciphertexts}")
    return [header.to_array(), ciphertexts_to_array(ciphertexts, header.key_bits)]


def unpack_payload(arrays: Sequence[np.ndarray]) -> tuple[Header, list[int]]:
    """Header and ciphertext integers; structural checks only (no key, no codec)."""
    from fedids.crypto.wire import WireFormatError, array_to_ciphertexts

    if len(arrays) != 2:
        raise WireFormatError(f"expected 2 arrays (header, ciphertexts), got {len(arrays)}")
    header = Header.from_array(arrays[0])
    return header, array_to_ciphertexts(arrays[1], header)
