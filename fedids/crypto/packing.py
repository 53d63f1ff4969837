"""Fixed-width slots <-> plaintext integers, vectorized with numpy.

A plaintext holds ``per_plaintext`` slots of ``slot_bits`` bits each, little-endian: slot ``i``
occupies bits ``[i*slot_bits, (i+1)*slot_bits)``. Slot values are non-negative and below
``2**slot_bits`` (callers prove that for sums too, see docs/paillier.md), so reading a slot
back is reading its bit field. A field wider than one slot is stored as consecutive slots
(limbs) of ONE plaintext: its bits are just split across them, so a carry from a low limb
into the next one during a homomorphic sum is exactly the carry of the wide field.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Plaintexts packed/unpacked per numpy block (bounds the bit matrices' memory).
CHUNK = 256
#: Slots are decoded into int64 lanes.
MAX_SLOT_BITS = 62


def n_plaintexts(n_slots: int, per_plaintext: int) -> int:
    return -(-int(n_slots) // int(per_plaintext))


def pack_slots(slots: np.ndarray, slot_bits: int, per_plaintext: int) -> list[int]:
    """Plaintext integers holding ``slots`` (each ``< 2**slot_bits``), zero-padded at the end."""
    sb, spc = int(slot_bits), int(per_plaintext)
    q = np.asarray(slots, dtype=np.uint64).ravel()
    if q.size and int(q.max()) >> sb:
        raise ValueError(f"a slot value does not fit in {sb} bits")
    n_pt = n_plaintexts(q.size, spc)
    padded = np.zeros((n_pt, spc), dtype=np.uint64)
    padded.reshape(-1)[: q.size] = q
    shifts = np.arange(sb, dtype=np.uint64)
    out: list[int] = []
    for start in range(0, n_pt, CHUNK):  # bounded memory for large models
        block = padded[start : start + CHUNK]
        bits = ((block[:, :, None] >> shifts) & np.uint64(1)).astype(np.uint8)
        packed = np.packbits(bits.reshape(len(block), spc * sb), axis=1, bitorder="little")
        out.extend(int.from_bytes(row.tobytes(), "little") for row in packed)
    return out


def unpack_slots(
    plaintexts: Sequence[int], n_slots: int, slot_bits: int, per_plaintext: int
) -> np.ndarray:
    """Inverse of :func:`pack_slots`: int64 array of the first ``n_slots`` slots.

    Raises ``ValueError`` if a plaintext is negative or has bits above its last slot (which an
    honest sum cannot produce: wrong key, or a corrupted or overflowed aggregate).
    """
    sb, spc = int(slot_bits), int(per_plaintext)
    width = spc * sb
    nbytes = (width + 7) // 8
    if len(plaintexts) != n_plaintexts(n_slots, spc):
        raise ValueError(
            f"{len(plaintexts)} plaintexts cannot hold exactly {n_slots} slots ({spc} each)"
        )
    buf = bytearray()
    for m in plaintexts:
        if m < 0 or int(m).bit_length() > width:
            raise ValueError("plaintext out of range: wrong key or corrupted aggregate")
        buf += int(m).to_bytes(nbytes, "little")
    raw = np.frombuffer(bytes(buf), dtype=np.uint8).reshape(len(plaintexts), nbytes)
    powers = np.int64(1) << np.arange(sb, dtype=np.int64)
    out = np.empty(len(plaintexts) * spc, dtype=np.int64)
    for start in range(0, len(plaintexts), CHUNK):
        block = raw[start : start + CHUNK]
        bits = np.unpackbits(block, axis=1, bitorder="little")[:, :width]
        out[start * spc : (start + len(block)) * spc] = (
            bits.reshape(len(block) * spc, sb).astype(np.int64) @ powers
        )
    return out[:n_slots]


def limbs(value: int, slot_bits: int, count: int) -> list[int]:
    """``value`` split into ``count`` little-endian limbs of ``slot_bits`` bits."""
    if value < 0 or value >> (slot_bits * count):
        raise ValueError(f"field value does not fit in {count} slots of {slot_bits} bits")
    mask = (1 << slot_bits) - 1
    return [(value >> (i * slot_bits)) & mask for i in range(count)]


def from_limbs(values: Sequence[int], slot_bits: int) -> int:
    return sum(int(v) << (i * slot_bits) for i, v in enumerate(values))
