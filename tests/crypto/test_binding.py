"""Bindings: int64 fields, kinds, and the keyed tag that makes replays detectable."""

from __future__ import annotations

import pytest

from fedids.crypto.binding import TAG_BITS, Binding, binding_tag, tag_key_from_factors


def test_fields_are_checked():
    Binding(1, 2, 1, Binding.MODEL)
    with pytest.raises(ValueError, match="kind=9"):
        Binding(1, 2, 1, 9)
    with pytest.raises(ValueError, match="round must be an integer"):
        Binding(1, 2.0, 1, Binding.MODEL)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="run_id=.* does not fit in int64"):
        Binding(2**63, 1, 0, Binding.MODEL)


def test_run_id_int64_is_bijective_on_uint64():
    assert Binding.run_id_int64(5) == 5
    assert Binding.run_id_int64(2**64 - 1) == -1
    assert Binding.run_id_int64(2**63) == -(2**63)
    with pytest.raises(ValueError):
        Binding.run_id_int64(2**64)


def test_differences_and_describe():
    a = Binding(7, 3, 2, Binding.MODEL)
    b = Binding(7, 4, 3, Binding.MODEL)
    assert a.differences(b) == "round=3 (expected 4), base_version=2 (expected 3)"
    assert a.differences(a) == ""
    assert "round 3" in a.describe() and "MODEL" in a.describe()


def test_tag_depends_on_key_and_binding_but_not_base_version():
    k1, k2 = tag_key_from_factors(11, 13), tag_key_from_factors(13, 17)
    assert tag_key_from_factors(13, 11) == k1  # order of the factors does not matter
    b = Binding(7, 3, 2, Binding.MODEL)
    t = binding_tag(k1, b)
    assert 0 <= t < 2**TAG_BITS
    assert binding_tag(k2, b) != t
    for other in (
        Binding(8, 3, 2, Binding.MODEL),
        Binding(7, 4, 2, Binding.MODEL),
        Binding(7, 3, 2, Binding.EVAL),
        Binding(7, 3, 2, Binding.MODEL, tag=1),
    ):
        assert binding_tag(k1, other) != t
    # buffered aggregation sums updates trained from different model versions
    assert binding_tag(k1, Binding(7, 3, 0, Binding.MODEL)) == t
