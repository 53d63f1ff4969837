"""Protocol v2 layouts: the exact no-overflow bound, the error bound, and the decode checks.

Sums are computed in the clear: decrypting a Paillier aggregate yields exactly
``sum_k m_k * plaintext_k mod n``, and every test asserts the sum stays below
``2**(key_bits - 1) <= n``, so the clear sum IS what a device decrypts.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from fedids.crypto.codec import CodecParams
from fedids.crypto.layout import DecodeError, R

TAG = 0xABCDEF123456


def clear_sum(updates: list[list[int]], multipliers: list[int], meta: bool) -> list[int]:
    """What the server's homomorphic sum decrypts to (meta ciphertext: multiplier 1)."""
    out = []
    for j in range(len(updates[0])):
        out.append(
            sum(
                (1 if meta and j == 0 else m) * u[j]
                for u, m in zip(updates, multipliers, strict=True)
            )
        )
    return out


def assert_below_n(plaintexts: list[int], params: CodecParams) -> None:
    assert all(0 <= m < 2 ** (params.key_bits - 1) for m in plaintexts)


def test_defaults_layout():
    p = CodecParams().validate()
    m = p.model_layout
    assert (m.slot_bits, m.per_plaintext, m.D) == (23, 89, 128)
    assert [(f.name, f.n_slots) for f in m.fields] == [("share", 2), ("mult", 1), ("tag", 3)]
    assert not m.has_meta
    assert p.n_model_ciphertexts(5125) == 58  # the same count as protocol v1's 58
    c = p.count_layout
    assert (c.slot_bits, c.per_plaintext) == (39, 52)
    assert p.n_count_ciphertexts(26) == 1
    assert CodecParams(max_multiplier=4).validate().n_model_ciphertexts(5125) == 65  # +meta


codec_settings = st.builds(
    CodecParams,
    key_bits=st.sampled_from([512, 1024]),
    value_bits=st.integers(2, 24),
    clip=st.floats(0.01, 50.0),
    max_clients=st.integers(1, 300),
    max_multiplier=st.integers(1, 9),
    count_bits=st.integers(1, 40),
)


@given(codec_settings)
@settings(max_examples=300, deadline=None)
def test_D_is_the_largest_resolution_that_cannot_overflow(p):
    """The defining inequality of D, exactly, and that D+1 would break it."""
    try:
        p.validate()
    except ValueError:
        return
    m = p.model_layout
    top = (1 << m.slot_bits) - 1
    km = p.max_clients * p.max_multiplier
    F = m.share_limit_max
    assert m.Q * m.D * F + (R // 2) * km <= R * top
    assert m.Q * (m.D + 1) * F + (R // 2) * km > R * top
    assert m.D >= max(1, -(-p.max_clients // 2))  # error <= 1 step at full participation
    if m.slot_bits > p.value_bits:  # and the slots are the narrowest that achieve it
        assert m._resolution(m.slot_bits - 1) < max(1, -(-p.max_clients // 2))
    # the worst honest value-slot sum is exactly the slot limit at (F_max, K*M)
    assert m.slot_limit(F, km) <= top
    # fields never overflow, whatever the shares (sigma <= R each)
    assert (1 << m.field("share").bits) > km * R
    assert (1 << m.field("mult").bits) > km
    assert (1 << m.field("tag").bits) > km * ((1 << 48) - 1)


def _extreme_shares(k: int) -> list[float]:
    """k shares summing to <= 1 whose sigma all round UP by exactly 1/2 (round-half-even on an
    odd integer + 1/2), so F reaches R * sum(s) + k/2: the top of its honest range."""
    j = (R // k) - 1
    j -= 1 - j % 2  # odd
    return [(j + 0.5) / R] * k


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"key_bits": 512},
        {"key_bits": 1024, "max_clients": 7, "max_multiplier": 3},
        {"key_bits": 1024, "value_bits": 24, "max_clients": 300, "max_multiplier": 2},
        {"key_bits": 512, "value_bits": 2, "max_clients": 1},
    ],
)
def test_worst_case_honest_aggregate_fits_and_decodes(kw):
    """max_clients updates, every multiplier max_multiplier, every value at +clip, shares
    rounding up: the largest sums honest devices can produce still fit, exactly."""
    p = CodecParams(**kw).validate()
    m = p.model_layout
    k, mm = p.max_clients, p.max_multiplier
    shares = _extreme_shares(k)
    assert sum(shares) <= 1.0
    n_values = 3 * m.per_plaintext + 5  # several plaintexts, a partial last one
    values = np.full(n_values, p.clip)
    updates = [m.encode(values, s, TAG)[0] for s in shares]
    summed = clear_sum(updates, [mm] * k, m.has_meta)
    assert_below_n(summed, p)
    sums, slots = m.read(summed, n_values)
    assert sums.share_field == mm * sum(m.sigma(s) for s in shares)
    assert 2 * sums.share_field <= 2 * mm * R + sums.multiplier_total
    assert sums.multiplier_total == k * mm and sums.contributors == k
    assert not sums.overflow
    assert int(slots.max()) <= m.slot_limit(sums.share_field, sums.multiplier_total)
    assert int(slots.max()) < 1 << m.slot_bits
    m.check(sums, slots, TAG)
    np.testing.assert_allclose(m.average(slots, sums.share_field), p.clip, atol=p.step)


@pytest.mark.parametrize("mm", [1, 3])
def test_dishonest_shares_are_refused_with_fields_intact(mm):
    """Every device claims the whole federation (share 1): the value slots overflow, but the
    guard keeps plaintext 0 below n, the fields decode exactly and the share check refuses."""
    p = CodecParams(key_bits=512, max_clients=9, max_multiplier=mm).validate()
    m = p.model_layout
    n_values = 2 * m.per_plaintext
    updates = [m.encode(np.full(n_values, p.clip), 1.0, TAG)[0] for _ in range(9)]
    summed = clear_sum(updates, [mm] * 9, m.has_meta)
    assert_below_n(summed, p)
    sums, slots = m.read(summed, n_values)
    assert sums.share_field == 9 * mm * R and sums.tag_field == 9 * mm * TAG
    assert sums.overflow  # the value slots did carry
    with pytest.raises(DecodeError, match="exceeds its bound"):
        m.check(sums, slots, TAG)


def _exact_fedavg(xs, n_k, mults, clip):
    w = np.array(n_k, dtype=np.float64) * np.array(mults, dtype=np.float64)
    return (w[:, None] * np.clip(np.stack(xs), -clip, clip)).sum(axis=0) / w.sum()


@given(
    clients=st.lists(
        st.tuples(st.integers(1, 10**9), st.integers(0, 2**31), st.integers(1, 4)),
        min_size=1,
        max_size=12,
    ),
    extra_devices=st.integers(0, 10**9),  # examples of devices that did not contribute
    n_values=st.integers(1, 150),
    value_bits=st.integers(4, 24),
    clip=st.floats(0.05, 20.0),
    mm=st.integers(1, 4),
)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_error_bound_holds(clients, extra_devices, n_values, value_bits, clip, mm):
    """|decoded - exact FedAvg of the clipped values, weighted by m_k * n_k| <= error_bound."""
    k = len(clients)
    p = CodecParams(
        key_bits=512, value_bits=value_bits, clip=clip, max_clients=k, max_multiplier=mm
    ).validate()
    m = p.model_layout
    n_k = [c[0] for c in clients]
    total = sum(n_k) + extra_devices
    assume(all(n / total >= 2.0**-31 for n in n_k))  # above the share resolution
    mults = [min(c[2], mm) for c in clients]
    xs = [
        np.random.default_rng(seed).uniform(-1.5 * clip, 1.5 * clip, n_values)
        for _, seed, _ in clients
    ]
    updates = [m.encode(x, n / total, TAG)[0] for x, n in zip(xs, n_k, strict=True)]
    summed = clear_sum(updates, mults, m.has_meta)
    assert_below_n(summed, p)
    sums, slots = m.read(summed, n_values)
    m.check(sums, slots, TAG)
    decoded = m.average(slots, sums.share_field)
    exact = _exact_fedavg(xs, n_k, mults, clip)
    bound = m.error_bound(sums.share_field, sums.multiplier_total)
    assert np.all(np.abs(decoded.astype(np.float32) - exact) <= bound)
    # and the a-priori form of the docs: (MULT/S) * step * (1/(2D) + Q/(2R)) + float slack
    s_hat = sums.share_field / R
    a_priori = (sums.multiplier_total / s_hat) * p.step * (
        (0.5 + m.eta) / m.D + m.Q / (2 * R)
    ) + clip * 2.0**-23
    assert bound <= a_priori


@pytest.mark.parametrize("k", [10, 128])
def test_unequal_clients_error_is_below_one_step(k):
    """The issue's target (max error / step <= 2 for 10 unequal clients), at the defaults and
    at max_clients, with sizes spanning four orders of magnitude."""
    p = CodecParams(key_bits=1024).validate()
    m = p.model_layout
    rng = np.random.default_rng(k)
    n_k = (10 ** rng.uniform(2, 6, k)).astype(int)
    xs = [rng.normal(0, 1.5, 700) for _ in range(k)]
    updates = [m.encode(x, n / n_k.sum(), TAG)[0] for x, n in zip(xs, n_k, strict=True)]
    sums, slots = m.read(clear_sum(updates, [1] * k, False), 700)
    m.check(sums, slots, TAG)
    err = np.abs(
        m.average(slots, sums.share_field).astype(np.float32)
        - _exact_fedavg(xs, n_k, [1] * k, p.clip)
    )
    assert err.max() / p.step <= k / (2 * m.D) + 0.01
    assert err.max() <= m.error_bound(sums.share_field, sums.multiplier_total)


def test_share_refusals():
    m = CodecParams(key_bits=512).validate().model_layout
    for bad in (0.0, -0.1, 1.0000001, float("nan"), float("inf"), 2.0**-40):
        with pytest.raises(ValueError, match="share"):
            m.sigma(bad)
    with pytest.raises(ValueError, match="share must be a number"):
        m.sigma("0.5")  # type: ignore[arg-type]
    assert m.sigma(1.0) == R and m.sigma(0.5) == R // 2
    with pytest.raises(ValueError, match="NaN"):
        m.encode(np.array([0.0, np.nan]), 0.5, TAG)


def _one_update_sums(p, share=0.5, mult=1):
    m = p.model_layout
    pts = m.encode(np.linspace(-1, 1, 40), share, TAG)[0]
    return m, m.read(clear_sum([pts], [mult], m.has_meta), 40)


def test_check_refuses_what_honest_sums_cannot_be():
    p = CodecParams(key_bits=512, max_clients=4).validate()
    m, (sums, slots) = _one_update_sums(p)
    m.check(sums, slots, TAG)
    with pytest.raises(DecodeError, match="binding tag"):
        m.check(sums, slots, TAG + 1)
    with pytest.raises(DecodeError, match="slot exceeds"):
        m.check(sums, slots + (1 << 20), TAG)
    forged = sums.__class__(
        **{**sums.__dict__, "contributors": 5, "multiplier_total": 5, "tag_field": 5 * TAG}
    )
    with pytest.raises(DecodeError, match="outside"):
        m.check(forged, slots, TAG)
    guarded = sums.__class__(**{**sums.__dict__, "overflow": True})
    with pytest.raises(DecodeError, match="overflowed"):
        m.check(guarded, slots, TAG)


def test_multiplier_beyond_max_is_refused():
    p = CodecParams(key_bits=512, max_clients=4, max_multiplier=2).validate()
    m, (sums, slots) = _one_update_sums(p, mult=3)  # server used 3 > max_multiplier
    assert sums.contributors == 1 and sums.multiplier_total == 3
    with pytest.raises(DecodeError, match="multiplier total 3"):
        m.check(sums, slots, TAG)


def test_count_layout_round_trip_and_bounds():
    p = CodecParams(key_bits=512, max_clients=5, count_bits=8).validate()
    c = p.count_layout
    vectors = [np.array([0, 1, 255, 7] * 9, dtype=np.int64) for _ in range(5)]
    summed = clear_sum([c.encode(v, TAG) for v in vectors], [1] * 5, False)
    assert_below_n(summed, p)
    count, tag_field, counts = c.read(summed, 36)
    c.check(count, tag_field, counts, TAG)
    assert count == 5 and tag_field == 5 * TAG
    np.testing.assert_array_equal(counts, 5 * vectors[0])
    with pytest.raises(ValueError, match="counts must be in"):
        c.encode(np.array([256]), TAG)
    with pytest.raises(ValueError, match="counts must be in"):
        c.encode(np.array([-1]), TAG)
    with pytest.raises(ValueError, match="integers"):
        c.encode(np.array([1.0]), TAG)
    with pytest.raises(DecodeError, match="exceeds"):
        c.check(count, tag_field, counts + 5 * 255, TAG)


@given(codec_settings, st.integers(1, 40), st.integers(0, 2**31))
@settings(max_examples=100, deadline=None)
def test_count_worst_case_fits(p, n_counts, seed):
    try:
        p.validate()
    except ValueError:
        return
    c = p.count_layout
    top = np.full(n_counts, (1 << p.count_bits) - 1, dtype=np.int64)
    k = p.max_clients
    summed = clear_sum([c.encode(top, TAG)] * k, [1] * k, False)
    assert_below_n(summed, p)
    count, tag_field, counts = c.read(summed, n_counts)
    c.check(count, tag_field, counts, TAG)
    assert count == k and int(counts.max()) == k * ((1 << p.count_bits) - 1)
