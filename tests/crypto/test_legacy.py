"""Protocol v1 codec (fedids.crypto.legacy): delete with it once every caller uses v2."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedids.crypto import codec
from fedids.crypto.codec import CodecParams


def test_v1_defaults_give_89_slots_of_23_bits():
    p = CodecParams().validate()
    assert (p.slot_bits, p.slots_per_ciphertext) == (23, 89)
    assert p.slots_per_ciphertext * p.slot_bits <= p.key_bits - 1
    assert p.step == pytest.approx(8.0 / 65535)


def test_v1_strategy_refuses_more_clients_than_the_weight_headroom():
    """v1's weights need max_clients <= 2**weight_bits - 1; it is enforced where v1 weighs."""
    p = CodecParams(key_bits=512, max_clients=128, weight_bits=7).validate()
    with pytest.raises(ValueError, match="weight_bits=7 allows sums up to 127"):
        codec.integer_weights([1] * 128, p)


def test_quantize_counts_clipped_and_handles_negatives():
    p = CodecParams(key_bits=512)
    v = np.array([-10.0, -4.0, -1.25, 0.0, 1.25, 4.0, 9.0])
    u, clipped = codec.quantize(v, p)
    assert clipped == 2
    assert u[0] == 0 and u[-1] == p.max_quantized and u[1] == 0 and u[5] == p.max_quantized
    back = codec.dequantize(u.astype(np.int64), 1, p)
    assert np.all(np.abs(back - np.clip(v, -4, 4)) <= p.step / 2 + 1e-12)
    assert back[2] < 0 < back[4]


def test_quantize_refuses_nan():
    with pytest.raises(ValueError, match="NaN"):
        codec.quantize(np.array([0.0, np.nan]), CodecParams(key_bits=512))


@given(st.integers(1, 400), st.integers(0, 2**31))
@settings(max_examples=30, deadline=None)
def test_pack_unpack_round_trip(n_values, seed):
    p = CodecParams(key_bits=512)
    rng = np.random.default_rng(seed)
    u = rng.integers(0, 2**p.slot_bits, n_values, dtype=np.uint64)
    plain = codec.pack(u, p)
    assert len(plain) == p.n_ciphertexts(n_values)
    assert all(0 <= m < 2 ** (p.key_bits - 1) for m in plain)
    np.testing.assert_array_equal(codec.unpack(plain, n_values, p), u.astype(np.int64))


def test_pack_refuses_quantum_too_wide():
    p = CodecParams(key_bits=512)
    with pytest.raises(ValueError, match="does not fit"):
        codec.pack(np.array([2**p.slot_bits], dtype=np.uint64), p)


@given(st.lists(st.integers(1, 10**7), min_size=1, max_size=127), st.integers(7, 12))
@settings(max_examples=200, deadline=None)
def test_integer_weights_never_exceed_the_slot_headroom(num_examples, weight_bits):
    p = CodecParams(key_bits=512, weight_bits=weight_bits, max_clients=127)
    w = codec.integer_weights(num_examples, p)
    assert all(x >= 1 for x in w)
    assert sum(w) <= 2**weight_bits - 1
    k, s = len(w), 2**weight_bits - 1 - len(w)
    term = codec.weight_rounding_term(num_examples, w)
    assert term <= 2 * k / max(k, s - k) + 1e-12  # a priori bound of the docs


def test_integer_weights_refuse_too_many_clients():
    p = CodecParams(key_bits=512, weight_bits=7, max_clients=10)
    with pytest.raises(ValueError, match="max_clients=10"):
        codec.integer_weights([5] * 11, p)


def _homomorphic_sum_in_the_clear(plaintexts_per_client, weights):
    """What decrypting the server's aggregate yields: sum_k w_k * m_k per plaintext."""
    return [
        sum(w * m[j] for m, w in zip(plaintexts_per_client, weights, strict=True))
        for j in range(len(plaintexts_per_client[0]))
    ]


client_values = st.lists(
    st.floats(-1.5, 1.5, allow_nan=False), min_size=1, max_size=60
)  # in units of clip, so some values get clipped


@given(
    clients=st.lists(
        st.tuples(st.integers(1, 100_000), st.integers(0, 2**31)), min_size=1, max_size=8
    ),
    n_values=st.integers(1, 120),
    value_bits=st.integers(4, 24),
    weight_bits=st.integers(4, 12),
    clip=st.floats(0.05, 20.0),
)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_error_bound_holds(clients, n_values, value_bits, weight_bits, clip):
    """|decoded - sum_k (n_k/N) clip(x_k)| <= step/2 + spread/2 * sum|w_k/W - n_k/N|."""
    k = len(clients)
    p = CodecParams(
        key_bits=512, value_bits=value_bits, weight_bits=weight_bits, clip=clip, max_clients=k
    )
    if k > p.max_weight_sum or p.slot_bits > 62:
        return
    p.validate()
    n_k = [c[0] for c in clients]
    xs = [
        np.random.default_rng(seed).uniform(-1.5 * clip, 1.5 * clip, n_values)
        for _, seed in clients
    ]
    packed = [codec.pack(codec.quantize(x, p)[0], p) for x in xs]
    weights = codec.integer_weights(n_k, p)
    sums = codec.unpack(_homomorphic_sum_in_the_clear(packed, weights), n_values, p)
    decoded = codec.dequantize(sums, sum(weights), p)

    clipped = np.clip(np.stack(xs), -clip, clip)
    exact = (np.array(n_k, dtype=np.float64)[:, None] * clipped).sum(axis=0) / sum(n_k)
    spread = clipped.max(axis=0) - clipped.min(axis=0)
    term = codec.weight_rounding_term(n_k, weights)
    bound = p.step / 2 + spread / 2 * term
    tol = 1e-9 * clip  # float64 arithmetic in the check itself
    assert np.all(np.abs(decoded - exact) <= bound + tol)
    # the documented worst case (spread = 2*clip) and the a priori weight term
    assert np.all(np.abs(decoded - exact) <= codec.error_bound(p, n_k, weights) + tol)
    s = p.max_weight_sum - k
    assert term <= 2 * k / max(k, s - k) + 1e-12
    # float32 output adds at most clip * 2**-24
    assert np.all(np.abs(decoded.astype(np.float32) - exact) <= bound + clip * 2.0**-24 + tol)


def test_equal_clients_have_no_weight_rounding_error():
    p = CodecParams(key_bits=512)
    w = codec.integer_weights([500, 500, 500], p)
    assert len(set(w)) == 1
    assert codec.weight_rounding_term([500, 500, 500], w) == pytest.approx(0.0, abs=1e-15)
    assert codec.error_bound(p, [500, 500, 500]) == pytest.approx(p.step / 2)
