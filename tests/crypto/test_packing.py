"""Fixed-width slots and multi-slot fields."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedids.crypto.packing import from_limbs, limbs, pack_slots, unpack_slots


@given(st.integers(1, 400), st.integers(2, 62), st.integers(0, 2**31))
@settings(max_examples=60, deadline=None)
def test_round_trip(n, slot_bits, seed):
    per = max(1, 1000 // slot_bits)
    u = np.random.default_rng(seed).integers(0, 2**slot_bits, n, dtype=np.uint64)
    plain = pack_slots(u, slot_bits, per)
    assert len(plain) == -(-n // per) and all(m < 2 ** (per * slot_bits) for m in plain)
    np.testing.assert_array_equal(unpack_slots(plain, n, slot_bits, per), u.astype(np.int64))


def test_refusals():
    with pytest.raises(ValueError, match="does not fit"):
        pack_slots(np.array([8], dtype=np.uint64), 3, 4)
    with pytest.raises(ValueError, match="out of range"):
        unpack_slots([1 << 12], 4, 3, 4)
    with pytest.raises(ValueError, match="cannot hold"):
        unpack_slots([0, 0], 4, 3, 4)


def test_a_wide_field_carries_across_its_limbs():
    a, b = limbs(2**40 - 1, 23, 2), limbs(1, 23, 2)
    summed = [x + y for x, y in zip(a, b, strict=True)]  # the low limb exceeds 23 bits...
    packed = sum(v << (23 * i) for i, v in enumerate(summed))  # ...and carries in the integer
    assert from_limbs(unpack_slots([packed], 2, 23, 3).tolist(), 23) == 2**40
    with pytest.raises(ValueError):
        limbs(2**46, 23, 2)
