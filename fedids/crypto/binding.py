"""What a payload is for (run, round, kind) and the keyed tag that makes replays detectable.

The :class:`Binding` travels in the clear in every wire header, so the server can reject an
update for another run, round or kind. A header is the sender's word, though: whoever relays
a payload can rewrite it. So every payload also carries, INSIDE its plaintexts, a 48-bit
tag ``HMAC-SHA256(k, run_id, round, kind, tag)`` with ``k`` derived from the private key
(every device holds it; the server does not). Sums add the tags: an aggregate of updates
that all carry the binding's tag holds ``(sum of multipliers) * tag`` in its tag field, which
the decrypting device recomputes. Slipping in an update made for another round or run changes
that field by an amount the server cannot compute without ``k`` (it would have to guess a
48-bit difference), so the device refuses the aggregate. ``base_version`` is not in the tag:
buffered aggregation sums updates trained from different versions.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import astuple, dataclass
from typing import ClassVar

#: Bits of the keyed binding tag carried inside every payload.
TAG_BITS = 48
_INT64 = (-(1 << 63), (1 << 63) - 1)
_TAG_DOMAIN = b"fedids-binding-tag/1"
_KEY_DOMAIN = b"fedids-binding-key/1"


@dataclass(frozen=True)
class Binding:
    """Run, round and kind a payload belongs to (all int64)."""

    run_id: int  # Flower run id (see run_id_int64 for ids above 2**63 - 1)
    round: int  # round (sync) / aggregation version (buffered) the payload is for
    base_version: int  # global model version an update was trained from (sync: round - 1)
    kind: int  # MODEL, STATS (tag = pass), EVAL (tag = round evaluated)
    tag: int = 0

    MODEL: ClassVar[int] = 1
    STATS: ClassVar[int] = 2
    EVAL: ClassVar[int] = 3
    KIND_NAMES: ClassVar[dict[int, str]] = {1: "MODEL", 2: "STATS", 3: "EVAL"}

    def __post_init__(self) -> None:
        names = ("run_id", "round", "base_version", "kind", "tag")
        for name, value in zip(names, astuple(self), strict=True):
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"binding {name} must be an integer, got {type(value).__name__}")
            if not _INT64[0] <= value <= _INT64[1]:
                raise ValueError(f"binding {name}={value} does not fit in int64")
        if self.kind not in self.KIND_NAMES:
            raise ValueError(f"binding kind={self.kind} (expected 1 MODEL, 2 STATS or 3 EVAL)")

    @property
    def is_model(self) -> bool:
        return self.kind == self.MODEL

    def fields(self) -> tuple[int, int, int, int, int]:
        return (self.run_id, self.round, self.base_version, self.kind, self.tag)

    def describe(self) -> str:
        return (
            f"run {self.run_id}, round {self.round} (base {self.base_version}), "
            f"{self.KIND_NAMES[self.kind]} tag {self.tag}"
        )

    def differences(self, other: Binding) -> str:
        """Which fields differ, as ``round=3 (expected 4)``; empty if equal."""
        names = ("run_id", "round", "base_version", "kind", "tag")
        return ", ".join(
            f"{n}={a} (expected {b})"
            for n, a, b in zip(names, self.fields(), other.fields(), strict=True)
            if a != b
        )

    @staticmethod
    def run_id_int64(run_id: int) -> int:
        """A Flower run id (uint64) as the int64 with the same 64 bits (bijective)."""
        if not 0 <= int(run_id) < 1 << 64:
            raise ValueError(f"run id {run_id} is not a uint64")
        return int.from_bytes(int(run_id).to_bytes(8, "big"), "big", signed=True)


def tag_key_from_factors(p: int, q: int) -> bytes:
    """The binding-tag key: SHA-256 of the (sorted) prime factors, under a domain label."""
    lo, hi = sorted((int(p), int(q)))
    width = (hi.bit_length() + 7) // 8
    material = _KEY_DOMAIN + lo.to_bytes(width, "big") + hi.to_bytes(width, "big")
    return hashlib.sha256(material).digest()


def binding_tag(tag_key: bytes, binding: Binding) -> int:
    """The 48-bit keyed tag of ``binding`` (run_id, round, kind, tag; not base_version)."""
    msg = _TAG_DOMAIN + struct.pack(">4q", binding.run_id, binding.round, binding.kind, binding.tag)
    return int.from_bytes(hmac.new(tag_key, msg, hashlib.sha256).digest()[: TAG_BITS // 8], "big")
