"""The wire format of encrypted payloads: two numpy arrays ``[header, ciphertexts]``.

* ``header`` is a 1-D ``int64`` array (:class:`WireHeader`, protocol v2: 18 fields);
* ``ciphertexts`` is a ``uint8`` array of shape ``(n_ciphertexts, 2 * key_bytes)``, each row
  one ciphertext (an integer below ``n**2``) in big-endian, fixed width.

Fixed width keeps the size independent of the values (no length side channel) and makes
shape checks meaningful. Flower ships arrays as ``.npy`` bytes, so dtypes survive. Nothing
here needs a key; this module only (de)serializes and checks structure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fedids.crypto.binding import Binding
from fedids.crypto.codec import CodecParams

#: "FEDIPAL1" as a big-endian int64: marks a fedids Paillier payload.
MAGIC = int.from_bytes(b"FEDIPAL1", "big")
VERSION = 2
ROLE_UPDATE = 1
ROLE_AGGREGATE = 2
HEADER_FIELDS = (
    "magic",
    "version",
    "role",  # 1 update (one device), 2 aggregate (server sum)
    "key_bits",
    "key_id",  # first 8 bytes of the public key fingerprint (signed int64)
    "value_bits",
    "clip_bits",  # the float64 clip's IEEE-754 bits, viewed as int64 (exact)
    "max_clients",
    "max_multiplier",
    "count_bits",
    "n_values",  # model values or counts
    "n_ciphertexts",
    "run_id",
    "round",
    "base_version",
    "kind",
    "tag",
    "n_updates",  # 0 in an update; the server's claim in an aggregate (checked on decrypt)
)
HEADER_LEN = len(HEADER_FIELDS)
CODEC_FIELDS = ("key_bits", "value_bits", "max_clients", "max_multiplier", "count_bits")


class WireFormatError(ValueError):
    """A payload that is not a well-formed fedids Paillier payload, or one to refuse."""


def clip_to_bits(clip: float) -> int:
    return int(np.array([clip], dtype=np.float64).view(np.int64)[0])


def bits_to_clip(bits: int) -> float:
    return float(np.array([bits], dtype=np.int64).view(np.float64)[0])


@dataclass(frozen=True)
class WireHeader:
    role: int
    key_bits: int
    key_id: int
    value_bits: int
    clip: float
    max_clients: int
    max_multiplier: int
    count_bits: int
    n_values: int
    n_ciphertexts: int
    binding: Binding
    n_updates: int = 0
    version: int = VERSION

    @classmethod
    def for_update(
        cls, params: CodecParams, binding: Binding, n_values: int, key_id: int
    ) -> WireHeader:
        return cls(
            role=ROLE_UPDATE,
            key_bits=params.key_bits,
            key_id=key_id,
            value_bits=params.value_bits,
            clip=float(params.clip),
            max_clients=params.max_clients,
            max_multiplier=params.max_multiplier,
            count_bits=params.count_bits,
            n_values=int(n_values),
            n_ciphertexts=params.n_payload_ciphertexts(binding.kind, n_values),
            binding=binding,
        )

    def aggregate(self, binding: Binding, n_updates: int) -> WireHeader:
        """The header of the sum of updates with this header's codec and size."""
        return WireHeader(
            **{
                **self.__dict__,
                "role": ROLE_AGGREGATE,
                "binding": binding,
                "n_updates": int(n_updates),
            }
        )

    @property
    def is_aggregate(self) -> bool:
        return self.role == ROLE_AGGREGATE

    @property
    def kind(self) -> int:
        return self.binding.kind

    def to_array(self) -> np.ndarray:
        d = dict(self.__dict__)
        d.update(
            zip(
                ("run_id", "round", "base_version", "kind", "tag"),
                d.pop("binding").fields(),
                strict=True,
            )
        )
        d["magic"] = MAGIC
        d["clip_bits"] = clip_to_bits(d.pop("clip"))
        return np.array([d[f] for f in HEADER_FIELDS], dtype=np.int64)

    @classmethod
    def from_array(cls, arr: np.ndarray) -> WireHeader:
        a = np.asarray(arr)
        if a.dtype != np.int64 or a.ndim != 1 or a.shape[0] < 2:
            raise WireFormatError(f"header must be 1-D int64, got {a.dtype} {a.shape}")
        if int(a[0]) != MAGIC:
            raise WireFormatError("header magic is not fedids Paillier")
        if int(a[1]) != VERSION:
            raise WireFormatError(
                f"payload is protocol version {int(a[1])}; this side speaks version {VERSION}"
            )
        if a.shape[0] != HEADER_LEN:
            raise WireFormatError(f"header must have {HEADER_LEN} fields, got {a.shape[0]}")
        d = {f: int(v) for f, v in zip(HEADER_FIELDS, a.tolist(), strict=True)}
        d.pop("magic")
        d["clip"] = bits_to_clip(d.pop("clip_bits"))
        try:
            d["binding"] = Binding(
                *(d.pop(k) for k in ("run_id", "round", "base_version", "kind", "tag"))
            )
        except ValueError as exc:
            raise WireFormatError(f"header {exc}") from None
        return cls(**d)

    def check_against(self, params: CodecParams) -> None:
        """Raise :class:`WireFormatError` unless the header matches ``params`` and itself."""
        problems = []
        for name in CODEC_FIELDS:
            if getattr(self, name) != getattr(params, name):
                problems.append(f"{name}={getattr(self, name)} (expected {getattr(params, name)})")
        if self.clip != float(params.clip):
            problems.append(f"clip={self.clip} (expected {params.clip})")
        if self.role not in (ROLE_UPDATE, ROLE_AGGREGATE):
            problems.append(f"role={self.role}")
        if self.n_values < 1:
            problems.append(f"n_values={self.n_values}")
        elif not problems:
            expected = params.n_payload_ciphertexts(self.kind, self.n_values)
            if self.n_ciphertexts != expected:
                problems.append(
                    f"n_ciphertexts={self.n_ciphertexts} for {self.n_values} values "
                    f"(expected {expected})"
                )
        if self.role == ROLE_UPDATE and self.n_updates != 0:
            problems.append(f"n_updates={self.n_updates} in an update")
        if self.role == ROLE_AGGREGATE and not 1 <= self.n_updates <= params.max_clients:
            problems.append(f"n_updates={self.n_updates} (max_clients {params.max_clients})")
        if problems:
            raise WireFormatError("header mismatch: " + "; ".join(problems))


def ciphertexts_to_array(ciphertexts: Sequence[int], key_bits: int) -> np.ndarray:
    width = 2 * ((key_bits + 7) // 8)
    try:
        buf = b"".join(int(c).to_bytes(width, "big") for c in ciphertexts)
    except OverflowError:
        raise ValueError(f"a ciphertext does not fit in {width} bytes") from None
    return np.frombuffer(buf, dtype=np.uint8).reshape(len(ciphertexts), width).copy()


def array_to_ciphertexts(arr: np.ndarray, header: WireHeader) -> list[int]:
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


def encode_payload(header: WireHeader, ciphertexts: Sequence[int]) -> list[np.ndarray]:
    if len(ciphertexts) != header.n_ciphertexts:
        raise ValueError(f"{len(ciphertexts)} ciphertexts, header says {header.n_ciphertexts}")
    return [header.to_array(), ciphertexts_to_array(ciphertexts, header.key_bits)]


def decode_payload(arrays: Sequence[np.ndarray]) -> tuple[WireHeader, list[int]]:
    """v2 header and ciphertext integers; structural checks only (no key, no codec)."""
    if len(arrays) != 2:
        raise WireFormatError(f"expected 2 arrays (header, ciphertexts), got {len(arrays)}")
    header = WireHeader.from_array(arrays[0])
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
