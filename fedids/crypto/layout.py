"""Protocol v2 slot layouts: pre-weighted fixed-point model updates and count vectors.

Everything a sum can reach is bounded here with integers, so that no slot ever carries into
the next and no plaintext ever wraps modulo n. The proof is in docs/paillier.md ("Layout and
no-overflow proof"); ``tests/crypto/test_layout.py`` checks it with hypothesis, with sums at
the exact worst case.

Model update of device k (share ``s = n_k/N`` in (0, 1], clipped values ``x`` in [-clip, clip])
    ``sigma = round(s * R)`` with ``R = 2**SHARE_BITS`` (1 <= sigma <= R);
    each value ``v = round(sigma/R * (x + clip)/delta)``, ``delta = step / D``, clamped to
    ``[0, hi(sigma)]`` with ``hi(sigma) = (sigma*Q*D + R//2) // R`` (``Q = 2**value_bits - 1``).
    Plaintext 0 starts with three fields: SHARE = sigma, MULT = 1, TAG = the binding tag; the
    values follow. If ``max_multiplier > 1`` a META ciphertext (COUNT = 1, TAG) comes first:
    the server sums it with multiplier 1, so it counts contributors however the others are
    multiplied.
Aggregate (server: multipliers ``1 <= m_k <= M``, at most ``K = max_clients`` updates)
    SHARE = ``F = sum m_k sigma_k``, MULT = ``sum m_k``, TAG = ``(sum m_k) * tag``, each value
    slot ``sum m_k v_k <= (Q*D*F + (R//2)*MULT) // R``; the device decodes
    ``avg = slot * delta * R / F - clip`` = the FedAvg weighted by ``m_k * n_k``.
Count vector (entries ``< 2**count_bits``, multipliers must be 1)
    plaintext 0 starts with COUNT = 1 and TAG; entries follow.

Slot widths come from ``max_clients`` and ``max_multiplier``; ``D`` is the largest fine
resolution that still fits (128 with the defaults), which makes the error at most
``K/(2*D)`` quantization steps when every device contributes (docs: "Error bound").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fedids.crypto.binding import TAG_BITS
from fedids.crypto.packing import (
    MAX_SLOT_BITS,
    from_limbs,
    limbs,
    n_plaintexts,
    pack_slots,
    unpack_slots,
)

if TYPE_CHECKING:
    from fedids.crypto.codec import CodecParams

#: Shares are resolved to 2**-SHARE_BITS (``R = 2**SHARE_BITS``).
SHARE_BITS = 32
R = 1 << SHARE_BITS


class DecodeError(ValueError):
    """A decrypted aggregate that honest contributors cannot have produced."""


@dataclass(frozen=True)
class Field:
    """A named run of ``n_slots`` consecutive slots (limbs) at the start of plaintext 0."""

    name: str
    offset: int
    n_slots: int
    bits: int  # the field never exceeds 2**bits - 1 in any sum the layout allows

    def read(self, slots: np.ndarray, slot_bits: int) -> int:
        return from_limbs(slots[self.offset : self.offset + self.n_slots].tolist(), slot_bits)


def _fields(slot_bits: int, spec: Sequence[tuple[str, int]]) -> tuple[Field, ...]:
    out, offset = [], 0
    for name, bits in spec:
        n = -(-bits // slot_bits)
        out.append(Field(name, offset, n, bits))
        offset += n
    return tuple(out)


def _bits(value: int) -> int:
    """Bits needed to hold every integer in ``[0, value]``."""
    return max(1, int(value).bit_length())


class _Layout:
    slot_bits: int
    fields: tuple[Field, ...]

    def __init__(self, params: CodecParams) -> None:
        self.params = params
        self.K = params.max_clients
        self.M = params.max_multiplier

    @property
    def per_plaintext(self) -> int:
        return self.params.plaintext_bits // self.slot_bits

    @property
    def trailer_slots(self) -> int:
        return sum(f.n_slots for f in self.fields)

    def field(self, name: str) -> Field:
        return next(f for f in self.fields if f.name == name)

    def n_slot_plaintexts(self, n_values: int) -> int:
        return n_plaintexts(self._total_slots(n_values), self.per_plaintext)

    def problems(self) -> list[str]:
        out = []
        if self.slot_bits > MAX_SLOT_BITS:
            out.append(f"{self.name} slots of {self.slot_bits} bits exceed {MAX_SLOT_BITS}")
        elif self.trailer_slots + self.guard >= self.per_plaintext:
            out.append(
                f"{self.name} header fields need {self.trailer_slots} slots but a "
                f"{self.params.key_bits}-bit plaintext holds {self.per_plaintext}"
            )
        return out

    name = "layout"

    #: a zero slot at the top of plaintext 0 (model layout): see ModelLayout
    guard = 0

    def _total_slots(self, n_values: int) -> int:
        return self.trailer_slots + self.guard + int(n_values)

    def _guard_index(self, n_values: int) -> int:
        return min(self.per_plaintext - 1, self.trailer_slots + int(n_values))

    def _pack(self, head: list[int], values: np.ndarray) -> list[int]:
        flat = np.concatenate([np.array(head, dtype=np.uint64), values.astype(np.uint64)])
        if self.guard:
            flat = np.insert(flat, self._guard_index(values.size), np.uint64(0))
        return pack_slots(flat, self.slot_bits, self.per_plaintext)

    def _unpack(self, plaintexts: Sequence[int], n_values: int) -> tuple[np.ndarray, bool]:
        """All slots but the guard, and whether a slot overflowed: the guard slot is not zero
        or a plaintext has bits above its last slot (masked off here, so that the fields can
        still be read and the decoder can name the cause)."""
        width = self.per_plaintext * self.slot_bits
        overflow = any(m >> width for m in plaintexts if m >= 0)
        masked = [m & ((1 << width) - 1) if m >= 0 else m for m in plaintexts]
        try:
            slots = unpack_slots(
                masked, self._total_slots(n_values), self.slot_bits, self.per_plaintext
            )
        except ValueError as exc:
            raise DecodeError(str(exc)) from None
        if not self.guard:
            return slots, overflow
        at = self._guard_index(n_values)
        return np.delete(slots, at), overflow or bool(slots[at])

    def _head(self, values: dict[str, int]) -> list[int]:
        head: list[int] = []
        for f in self.fields:
            head += limbs(values[f.name], self.slot_bits, f.n_slots)
        return head


@dataclass(frozen=True)
class ModelSums:
    """The decoded fields of a model aggregate."""

    contributors: int  # COUNT (meta ciphertext) or MULT when max_multiplier == 1
    multiplier_total: int  # MULT = sum m_k
    share_field: int  # F = sum m_k sigma_k
    tag_field: int
    meta_tag_field: int | None
    overflow: bool  # a value slot carried (into the guard slot or past its plaintext)


class ModelLayout(_Layout):
    """Pre-weighted fixed-point model updates (see the module docstring)."""

    name = "model"

    def __init__(self, params: CodecParams) -> None:
        super().__init__(params)
        K, M = self.K, self.M
        self.Q = params.max_quantized
        #: honest share-field bound: distinct devices' shares sum to <= 1, so
        #: F = sum m_k sigma_k <= sum m_k (s_k R + 1/2) <= M*R + MULT/2; 2F <= 2MR + MULT
        self.share_limit_max = M * R + (K * M) // 2
        # the narrowest slots whose largest resolution D keeps the full-participation error
        # K/(2D) within one step: D >= K/2 (D = 128 for the defaults, in 23-bit slots)
        self.slot_bits = params.value_bits + max(0, _bits(K * M - 1) - 2)
        while self._resolution(self.slot_bits) < max(1, -(-K // 2)):
            self.slot_bits += 1
        self.D = self._resolution(self.slot_bits)
        self.fields = _fields(
            self.slot_bits,
            [
                ("share", _bits(K * M * R)),  # never overflows, even for dishonest shares
                ("mult", _bits(K * M)),
                ("tag", TAG_BITS + _bits(K * M)),
            ],
        )
        self.has_meta = M > 1
        self.meta_count_bits = _bits(K)

    #: The top slot of plaintext 0 stays zero in every update. Even when dishonest shares
    #: make value slots carry, the carry out of plaintext 0's last value slot lands in it
    #: (it is >= log2(K*M) bits wide) instead of pushing the plaintext past n, so the fields
    #: at the bottom of plaintext 0 always decode exactly: that is what lets "share total
    #: within its bound" prove that no value slot overflowed.
    guard = 1

    def _resolution(self, slot_bits: int) -> int:
        """Largest D with Q*D*F_max + (R//2)*K*M <= R*(2**slot_bits - 1): every honest value
        slot sum then fits in ``slot_bits`` (docs: "Layout and no-overflow proof")."""
        top = (1 << slot_bits) - 1
        return (R * top - (R // 2) * self.K * self.M) // (self.Q * self.share_limit_max)

    # -- derived ------------------------------------------------------------------------------
    @property
    def delta(self) -> float:
        """The fine resolution: ``step / D``."""
        return self.params.step / self.D

    def n_ciphertexts(self, n_values: int) -> int:
        return self.n_slot_plaintexts(n_values) + (1 if self.has_meta else 0)

    def problems(self) -> list[str]:
        out = super().problems()
        if self.slot_bits > 52:  # keeps the float64 rounding slack (eta) below 1/2
            out.append(
                f"model slots of {self.slot_bits} bits (value_bits + log2(max_clients * "
                "max_multiplier)) exceed 52: lower value_bits"
            )
        return out

    @property
    def eta(self) -> float:
        """Float64 slack of one encoded value: four roundings (relative error <= 2**-53 each)
        of numbers <= Q*D, compounded; 2**-50 over-covers ``(1 + 2**-53)**4 - 1``."""
        return self.Q * self.D * 2.0**-50

    def sigma(self, share: float) -> int:
        """``round(share * R)``; refuses shares outside (0, 1] or below the resolution."""
        if isinstance(share, bool) or not isinstance(share, int | float | np.floating):
            raise ValueError(f"share must be a number in (0, 1], got {type(share).__name__}")
        share = float(share)
        if not (math.isfinite(share) and 0.0 < share <= 1.0):
            raise ValueError(f"share={share!r} must be in (0, 1] (n_k / N)")
        sigma = min(R, int(round(share * R)))
        if sigma < 1:
            raise ValueError(f"share={share!r} is below the codec's resolution 2**-{SHARE_BITS}")
        return sigma

    def hi(self, sigma: int) -> int:
        return (sigma * self.Q * self.D + R // 2) // R

    # -- encode ---------------------------------------------------------------------------------
    def encode(self, values: np.ndarray, share: float, tag: int) -> tuple[list[int], int]:
        """Plaintexts of one update (meta first if any), and how many values were clipped."""
        v = np.asarray(values, dtype=np.float64).ravel()
        if v.size == 0:
            raise ValueError("no values to encode")
        if not np.all(np.isfinite(v)):
            raise ValueError(f"update holds {int(np.sum(~np.isfinite(v)))} NaN/inf values")
        sigma = self.sigma(share)
        clip = float(self.params.clip)
        clipped = int(np.count_nonzero((v < -clip) | (v > clip)))
        t = (np.clip(v, -clip, clip) + clip) * (self.Q * self.D / (2.0 * clip))
        q = np.clip(np.rint(t * (sigma / R)), 0, self.hi(sigma)).astype(np.int64)
        plaintexts = self._pack(self._head({"share": sigma, "mult": 1, "tag": tag}), q)
        if self.has_meta:
            plaintexts.insert(0, self.meta_plaintext(tag))
        return plaintexts, clipped

    def meta_plaintext(self, tag: int) -> int:
        return 1 + (tag << self.meta_count_bits)

    # -- decode -----------------------------------------------------------------------------------
    def read(self, plaintexts: Sequence[int], n_values: int) -> tuple[ModelSums, np.ndarray]:
        """Fields and value slot sums of an aggregate (no checks beyond the ranges)."""
        meta_tag = None
        body = list(plaintexts)
        if self.has_meta:
            meta = body.pop(0)
            count = meta & ((1 << self.meta_count_bits) - 1)
            meta_tag = meta >> self.meta_count_bits
        slots, overflow = self._unpack(body, n_values)
        sb = self.slot_bits
        mult = self.field("mult").read(slots, sb)
        sums = ModelSums(
            contributors=count if self.has_meta else mult,
            multiplier_total=mult,
            share_field=self.field("share").read(slots, sb),
            tag_field=self.field("tag").read(slots, sb),
            meta_tag_field=meta_tag,
            overflow=overflow,
        )
        return sums, slots[self.trailer_slots :]

    def check(self, sums: ModelSums, values: np.ndarray, tag: int) -> None:
        """Raise :class:`DecodeError` unless honest updates can have produced these sums."""
        c, mult, F = sums.contributors, sums.multiplier_total, sums.share_field
        if not 1 <= c <= self.K:
            raise DecodeError(f"encrypted contributor count {c} is outside [1, {self.K}]")
        if not c <= mult <= c * self.M:
            raise DecodeError(
                f"multiplier total {mult} is impossible for {c} contributors with "
                f"max_multiplier={self.M}"
            )
        if sums.tag_field != mult * tag or (
            sums.meta_tag_field is not None and sums.meta_tag_field != c * tag
        ):
            raise DecodeError(
                "binding tag does not match: an update for another run, round "
                "or kind was summed in, or the aggregate was forged"
            )
        if F < mult:
            raise DecodeError(f"share total {F / R:.6g} is below its floor (each share >= 2**-32)")
        if 2 * F > 2 * self.M * R + mult:
            raise DecodeError(
                f"share total {F / R:.6g} exceeds its bound {self.M} (max_multiplier): "
                "shares of more than the whole federation were summed"
            )
        if sums.overflow:
            raise DecodeError("a value slot overflowed: corrupted or forged aggregate")
        limit = self.slot_limit(F, mult)
        if values.size and int(values.max()) > limit:
            raise DecodeError("a value slot exceeds its bound: corrupted or forged aggregate")

    def slot_limit(self, share_field: int, mult: int) -> int:
        """Largest honest value-slot sum: ``sum m_k hi(sigma_k) <= (Q D F + R/2 MULT) / R``."""
        return (self.Q * self.D * share_field + (R // 2) * mult) // R

    def average(self, values: np.ndarray, share_field: int) -> np.ndarray:
        """``slot * delta * R / F - clip`` (float64)."""
        return values.astype(np.float64) * (self.delta * R / share_field) - float(self.params.clip)

    def error_bound(self, share_field: int, mult: int) -> float:
        """Largest |decoded - exact FedAvg of the clipped values|, float32 output included.

        ``(MULT * R / F) * (delta * (1/2 + eta) + clip / R)`` (docs: "Error bound") plus the
        float64 decoding and float32 output roundings.
        """
        clip = float(self.params.clip)
        core = (mult * R / share_field) * (self.delta * (0.5 + self.eta) + clip / R)
        return core + clip * 2.0**-24 + clip * 2.0**-48


class CountLayout(_Layout):
    """Count vectors summed with multiplier 1 (federated statistics, confusion matrices)."""

    name = "count"

    def __init__(self, params: CodecParams) -> None:
        super().__init__(params)
        self.max_entry = (1 << params.count_bits) - 1
        self.slot_bits = _bits(self.K * self.max_entry)
        self.fields = _fields(
            self.slot_bits, [("count", _bits(self.K)), ("tag", TAG_BITS + _bits(self.K))]
        )

    def n_ciphertexts(self, n_counts: int) -> int:
        return self.n_slot_plaintexts(n_counts)

    def encode(self, counts: np.ndarray, tag: int) -> list[int]:
        c = np.asarray(counts)
        if c.ndim != 1 or c.size == 0:
            raise ValueError(f"counts must be a non-empty 1-D array, got shape {c.shape}")
        if c.dtype.kind not in "iu":
            raise ValueError(f"counts must be integers, got {c.dtype}")
        if c.size and (int(c.min()) < 0 or int(c.max()) > self.max_entry):
            raise ValueError(
                f"counts must be in [0, 2**count_bits - 1 = {self.max_entry}], "
                f"got [{int(c.min())}, {int(c.max())}]"
            )
        return self._pack(self._head({"count": 1, "tag": tag}), c.astype(np.int64))

    def read(self, plaintexts: Sequence[int], n_counts: int) -> tuple[int, int, np.ndarray]:
        slots, overflow = self._unpack(plaintexts, n_counts)
        if overflow:
            raise DecodeError("a count slot overflowed: corrupted or forged aggregate")
        sb = self.slot_bits
        return (
            self.field("count").read(slots, sb),
            self.field("tag").read(slots, sb),
            slots[self.trailer_slots :],
        )

    def check(self, count: int, tag_field: int, counts: np.ndarray, tag: int) -> None:
        if not 1 <= count <= self.K:
            raise DecodeError(f"encrypted contributor count {count} is outside [1, {self.K}]")
        if tag_field != count * tag:
            raise DecodeError(
                "binding tag does not match: a payload for another run, round "
                "or kind was summed in, or the aggregate was forged"
            )
        if counts.size and int(counts.max()) > count * self.max_entry:
            raise DecodeError("a count exceeds what its contributors can sum to")
