"""BatchCrypt-style packing: clip, quantize to unsigned integers, pack many slots per plaintext.

Why this shape
--------------
Encrypting each float on its own costs one 2048-bit modular exponentiation and ~512 bytes
per 4-byte value. Packing ``slots_per_ciphertext`` quantized values into one plaintext
below ``n`` divides both by that factor (89 with the defaults).

Encoding (client)
    ``x = clip(v, -clip, clip)``; ``u = round((x + clip) / step)`` with
    ``step = 2*clip / (2**value_bits - 1)``, so ``0 <= u <= 2**value_bits - 1`` (an offset
    instead of two's complement keeps every slot non-negative, so sums never borrow).
    Slot ``i`` of a plaintext holds ``u`` at bits ``[i*slot_bits, (i+1)*slot_bits)`` with
    ``slot_bits = value_bits + weight_bits``; ``slots * slot_bits <= key_bits - 1`` so the
    packed integer is below ``2**(key_bits-1) <= n``.

Aggregation (server, on ciphertexts)
    Integer weights ``w_k = max(1, floor(n_k * S / N))`` with ``S = 2**weight_bits - 1 - K``
    (``n_k`` = client k's examples, ``N = sum n_k``, ``K`` clients). Since
    ``w_k <= n_k*S/N + 1``, ``W = sum w_k <= S + K = 2**weight_bits - 1``, so a slot sum
    ``sum w_k u_k <= (2**value_bits - 1) * (2**weight_bits - 1) < 2**slot_bits``: no carry
    into the next slot, and the whole plaintext stays below ``n`` (no wrap mod ``n``).
    This is why :meth:`CodecParams.validate` refuses ``max_clients > 2**weight_bits - 1``.

Decoding (client)
    ``avg = (slot_sum / W) * step - clip`` equals ``sum (w_k/W) * q_k`` exactly, where
    ``q_k = u_k*step - clip`` is client k's dequantized value.

Error bound (per parameter, proven in docs/paillier.md)
    With ``x_k`` the clipped value of client k and ``T = sum (n_k/N) x_k`` the exact
    sample-weighted FedAvg of the clipped values::

        |avg - T| <= step/2  +  (spread/2) * sum_k |w_k/W - n_k/N|

    where ``spread = max_k x_k - min_k x_k <= 2*clip``. The first term is quantization,
    the second the rounding of the FedAvg weights to integers (zero when the ``n_k`` are
    equal or exactly representable). A priori ``sum_k |w_k/W - n_k/N| <= 2K / W`` and
    ``W >= max(K, S - K)``. Converting the result to float32 adds at most
    ``clip * 2**-24`` (relative rounding of a value of magnitude ``<= clip``). Values
    outside ``[-clip, clip]`` are clipped first; encoders count them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Key sizes that configuration files may ask for (security policy, see ``from_config``).
PRODUCTION_KEY_BITS = (2048, 3072)
#: Smallest key the codec accepts at all (tests use 512/1024 bit keys for speed).
MIN_KEY_BITS = 512
MAX_KEY_BITS = 8192
#: Plaintexts packed/unpacked per numpy block (bounds the bit matrices' memory).
_CHUNK = 256
#: Slot sums are decoded into int64 lanes, so a slot must stay below 2**62. (With
#: MIN_KEY_BITS = 512 this also keeps at least 8 slots below n.)
MAX_SLOT_BITS = 62


class CodecConfigError(ValueError):
    """A codec configuration that could overflow or is out of range."""


@dataclass(frozen=True)
class CodecParams:
    """Packing parameters shared by clients (encode/decode) and the server (weights)."""

    key_bits: int = 2048
    value_bits: int = 16
    clip: float = 4.0
    weight_bits: int = 7
    max_clients: int = 100

    # -- derived quantities ------------------------------------------------------------
    @property
    def slot_bits(self) -> int:
        return self.value_bits + self.weight_bits

    @property
    def slots_per_ciphertext(self) -> int:
        """Slots that fit below ``2**(key_bits-1)``, itself below any ``key_bits``-bit n."""
        return (self.key_bits - 1) // self.slot_bits

    @property
    def max_quantized(self) -> int:
        return (1 << self.value_bits) - 1

    @property
    def max_weight_sum(self) -> int:
        """The largest ``sum(w_k)`` a slot can absorb without carrying."""
        return (1 << self.weight_bits) - 1

    @property
    def step(self) -> float:
        """Quantization step: ``2*clip / (2**value_bits - 1)``."""
        return 2.0 * self.clip / self.max_quantized

    @property
    def key_bytes(self) -> int:
        return (self.key_bits + 7) // 8

    def n_ciphertexts(self, n_values: int) -> int:
        return -(-n_values // self.slots_per_ciphertext)

    # -- validation ---------------------------------------------------------------------
    def validate(self) -> CodecParams:
        """Refuse any configuration that could overflow a slot or leave the valid range.

        Returns ``self`` so that ``CodecParams(...).validate()`` can be used inline.
        """
        problems: list[str] = []
        for name in ("key_bits", "value_bits", "weight_bits", "max_clients"):
            if not isinstance(getattr(self, name), int) or isinstance(getattr(self, name), bool):
                problems.append(f"{name} must be an integer, got {getattr(self, name)!r}")
        if problems:
            raise CodecConfigError("invalid Paillier codec settings: " + "; ".join(problems))
        if not MIN_KEY_BITS <= self.key_bits <= MAX_KEY_BITS:
            problems.append(
                f"key_bits={self.key_bits} is out of range [{MIN_KEY_BITS}, {MAX_KEY_BITS}]"
            )
        if not 2 <= self.value_bits <= 48:
            problems.append(f"value_bits={self.value_bits} is out of range [2, 48]")
        if not 1 <= self.weight_bits <= 30:
            problems.append(f"weight_bits={self.weight_bits} is out of range [1, 30]")
        if not (isinstance(self.clip, int | float) and math.isfinite(self.clip) and self.clip > 0):
            problems.append(f"clip={self.clip!r} must be a finite number > 0")
        if self.max_clients < 1:
            problems.append(f"max_clients={self.max_clients} must be >= 1")
        if problems:
            raise CodecConfigError("invalid Paillier codec settings: " + "; ".join(problems))
        if self.slot_bits > MAX_SLOT_BITS:
            problems.append(
                f"value_bits + weight_bits = {self.slot_bits} exceeds {MAX_SLOT_BITS} bits per slot"
            )
        if self.max_clients > self.max_weight_sum:
            problems.append(
                f"max_clients={self.max_clients} needs weight_bits >= "
                f"{self.max_clients.bit_length()} (each client weighs at least 1, so "
                f"{self.max_clients} clients can sum to {self.max_clients} > "
                f"2**weight_bits - 1 = {self.max_weight_sum}): slot sums could carry into "
                "the next slot and silently corrupt the model"
            )
        if problems:
            raise CodecConfigError("Paillier codec could overflow: " + "; ".join(problems))
        return self

    @classmethod
    def from_config(cls, mode: Mapping[str, Any]) -> CodecParams:
        """Build from the ``mode`` config group; only production key sizes are accepted."""
        params = cls(
            key_bits=int(mode["key_bits"]),
            value_bits=int(mode["value_bits"]),
            clip=float(mode["clip"]),
            weight_bits=int(mode["weight_bits"]),
            max_clients=int(mode["max_clients"]),
        )
        if params.key_bits not in PRODUCTION_KEY_BITS:
            raise CodecConfigError(
                f"mode.key_bits={params.key_bits}: use one of {PRODUCTION_KEY_BITS}"
            )
        return params.validate()


# -- quantization ---------------------------------------------------------------------------
def quantize(values: np.ndarray, params: CodecParams) -> tuple[np.ndarray, int]:
    """Clip and quantize a flat float array; returns (uint64 quanta, number of values clipped).

    NaN/inf are refused: a NaN would quantize to an arbitrary integer and poison every
    other client's model through the sum.
    """
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


# -- packing -------------------------------------------------------------------------------------
def pack(quanta: np.ndarray, params: CodecParams) -> list[int]:
    """Pack quanta (each < 2**slot_bits) into plaintext integers, little-endian slot order."""
    sb, spc = params.slot_bits, params.slots_per_ciphertext
    q = np.asarray(quanta, dtype=np.uint64).ravel()
    if q.size and int(q.max()) >> sb:
        raise ValueError(f"a quantum does not fit in {sb} bits")
    n_ct = params.n_ciphertexts(q.size)
    padded = np.zeros((n_ct, spc), dtype=np.uint64)
    padded.reshape(-1)[: q.size] = q
    shifts = np.arange(sb, dtype=np.uint64)
    out: list[int] = []
    for start in range(0, n_ct, _CHUNK):  # bounded memory for large models
        block = padded[start : start + _CHUNK]
        bits = ((block[:, :, None] >> shifts) & np.uint64(1)).astype(np.uint8)
        packed = np.packbits(bits.reshape(len(block), spc * sb), axis=1, bitorder="little")
        out.extend(int.from_bytes(row.tobytes(), "little") for row in packed)
    return out


def unpack(plaintexts: Sequence[int], n_values: int, params: CodecParams) -> np.ndarray:
    """Inverse of :func:`pack` for slot sums: int64 array of ``n_values`` slots."""
    sb, spc = params.slot_bits, params.slots_per_ciphertext
    nbytes = (spc * sb + 7) // 8
    if len(plaintexts) != params.n_ciphertexts(n_values):
        raise ValueError(
            f"{len(plaintexts)} plaintexts cannot hold exactly {n_values} values "
            f"({spc} per plaintext)"
        )
    buf = bytearray()
    for m in plaintexts:
        if m < 0 or m.bit_length() > spc * sb:
            raise ValueError("plaintext out of range: wrong key or corrupted aggregate")
        buf += int(m).to_bytes(nbytes, "little")
    raw = np.frombuffer(bytes(buf), dtype=np.uint8).reshape(len(plaintexts), nbytes)
    powers = np.int64(1) << np.arange(sb, dtype=np.int64)
    sums = np.empty(len(plaintexts) * spc, dtype=np.int64)
    for start in range(0, len(plaintexts), _CHUNK):  # bounded memory for large models
        block = raw[start : start + _CHUNK]
        bits = np.unpackbits(block, axis=1, bitorder="little")[:, : spc * sb]
        sums[start * spc : (start + len(block)) * spc] = (
            bits.reshape(len(block) * spc, sb).astype(np.int64) @ powers
        )
    return sums[:n_values]


# -- server-side integer weights -----------------------------------------------------------
def integer_weights(num_examples: Sequence[int], params: CodecParams) -> list[int]:
    """FedAvg weights as integers whose sum never exceeds ``2**weight_bits - 1``.

    ``w_k = max(1, floor(n_k * S / N))`` with ``S = 2**weight_bits - 1 - K``: every client
    counts, and the ``max(1, .)`` bump (at most +1 per client) is paid for by the ``- K``.
    """
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
    """Largest |decoded average - exact FedAvg of the clipped values| (before float32).

    ``spread`` is ``max_k x_k - min_k x_k`` for the parameter considered (default: the
    worst case ``2*clip``).
    """
    if weights is None:
        weights = integer_weights(num_examples, params)
    if spread is None:
        spread = 2.0 * params.clip
    return params.step / 2.0 + spread / 2.0 * weight_rounding_term(num_examples, weights)
