"""The wire format of encrypted updates and aggregates: two numpy arrays.

``[header, ciphertexts]`` where

* ``header`` is a 1-D ``int64`` array of :data:`HEADER_LEN` fields (see :class:`Header`);
* ``ciphertexts`` is a ``uint8`` array of shape ``(n_ciphertexts, 2 * key_bytes)``, each row
  one ciphertext (an integer below ``n**2``) in big-endian, fixed width.

Fixed width keeps the size independent of the values (no length side channel) and makes
shape checks meaningful. Flower ships arrays as ``.npy`` bytes, so dtypes survive.
Nothing here needs a key; this module only (de)serializes and checks structure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from fedids.crypto.codec import CodecParams

#: "FEDIPAL1" as a big-endian int64: marks a fedids Paillier payload.
MAGIC = int.from_bytes(b"FEDIPAL1", "big")
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


class WireFormatError(ValueError):
    """A payload that is not a well-formed fedids Paillier payload."""


def clip_to_bits(clip: float) -> int:
    return int(np.array([clip], dtype=np.float64).view(np.int64)[0])


def bits_to_clip(bits: int) -> float:
    return float(np.array([bits], dtype=np.int64).view(np.float64)[0])


@dataclass(frozen=True)
class Header:
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
        d = asdict(self)
        d["magic"] = MAGIC
        d["clip_bits"] = clip_to_bits(d.pop("clip"))
        return np.array([d[f] for f in HEADER_FIELDS], dtype=np.int64)

    @classmethod
    def from_array(cls, arr: np.ndarray) -> Header:
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
        """Raise :class:`WireFormatError` unless the header matches ``params`` and itself."""
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


def ciphertexts_to_array(ciphertexts: Sequence[int], key_bits: int) -> np.ndarray:
    width = 2 * ((key_bits + 7) // 8)
    try:
        buf = b"".join(int(c).to_bytes(width, "big") for c in ciphertexts)
    except OverflowError:
        raise ValueError(f"a ciphertext does not fit in {width} bytes") from None
    return np.frombuffer(buf, dtype=np.uint8).reshape(len(ciphertexts), width).copy()


def array_to_ciphertexts(arr: np.ndarray, header: Header) -> list[int]:
    """Rows back to integers after checking dtype and shape against the header."""
    a = np.asarray(arr)
    width = 2 * ((header.key_bits + 7) // 8)
    if a.dtype != np.uint8 or a.shape != (header.n_ciphertexts, width):
        raise WireFormatError(
            f"ciphertexts must be uint8 of shape ({header.n_ciphertexts}, {width}), "
            f"got {a.dtype} {a.shape}"
        )
    raw = np.ascontiguousarray(a).tobytes()
    return [int.from_bytes(raw[i : i + width], "big") for i in range(0, len(raw), width)]


def pack_payload(header: Header, ciphertexts: Sequence[int]) -> list[np.ndarray]:
    if len(ciphertexts) != header.n_ciphertexts:
        raise ValueError(f"{len(ciphertexts)} ciphertexts, header says {header.n_ciphertexts}")
    return [header.to_array(), ciphertexts_to_array(ciphertexts, header.key_bits)]


def unpack_payload(arrays: Sequence[np.ndarray]) -> tuple[Header, list[int]]:
    """Header and ciphertext integers; structural checks only (no key, no codec)."""
    if len(arrays) != 2:
        raise WireFormatError(f"expected 2 arrays (header, ciphertexts), got {len(arrays)}")
    header = Header.from_array(arrays[0])
    return header, array_to_ciphertexts(arrays[1], header)


def is_encrypted_payload(arrays: Sequence[np.ndarray]) -> bool:
    """True for ``[int64 header with our magic, 2-D uint8]``: cheap, for routing only."""
    if len(arrays) != 2:
        return False
    head, body = (np.asarray(a) for a in arrays)
    return (
        head.dtype == np.int64
        and head.ndim == 1
        and head.shape[0] >= 1
        and int(head[0]) == MAGIC
        and body.dtype == np.uint8
        and body.ndim == 2
    )
