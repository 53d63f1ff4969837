"""Protocol v1 facade (encrypt/decrypt): delete with v1 once every caller uses v2."""

from __future__ import annotations

import numpy as np
import pytest

from fedids.crypto import codec, wire
from fedids.crypto.codec import CodecParams
from fedids.crypto.update import (
    AggregateDecryptor,
    UpdateEncryptor,
    WireFormatError,
    is_encrypted_payload,
)
from strategies.homomorphic import weighted_sum

SHAPES = [(41, 64), (64,), (64,), (64,), (64, 32), (32,), (32,), (32,), (32, 5), (5,)]


def model(seed: int, scale: float = 0.5) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(0.0, scale, s).astype(np.float32) for s in SHAPES]


def aggregate(payloads, num_examples, params, n):
    """The server's work, without Flower: integer weights and the homomorphic sum."""
    headers_cts = [wire.unpack_payload(p) for p in payloads]
    weights = codec.integer_weights(num_examples, params)
    summed = weighted_sum([c for _, c in headers_cts], weights, n)
    h = headers_cts[0][0]
    agg = wire.Header(**{**h.__dict__, "weight_sum": sum(weights), "n_contributors": len(weights)})
    return wire.pack_payload(agg, summed), weights


def test_full_model_round_trip_at_2048_bits(keys2048):
    pub, priv = keys2048
    params = CodecParams().validate()
    models, counts = [model(1), model(2)], [1000, 3000]
    enc = UpdateEncryptor(pub, params, workers=2)
    n_values = sum(int(np.prod(s)) for s in SHAPES)
    enc.start_precompute(n_values)
    payloads = [enc.encrypt(models[0])]
    assert enc.last_stats.precomputed_obfuscators <= 58
    payloads.append(enc.encrypt(models[1]))
    assert payloads[0][1].shape == (58, 512)  # 5125 values / 89 slots, 2*256 bytes each
    agg, weights = aggregate(payloads, counts, params, pub.n)
    assert is_encrypted_payload(agg)
    out = AggregateDecryptor(priv, params, workers=2).decrypt(agg, SHAPES)
    assert [o.shape for o in out] == SHAPES and all(o.dtype == np.float32 for o in out)
    exact = [0.25 * a + 0.75 * b for a, b in zip(*models, strict=True)]
    bound = codec.error_bound(params, counts, weights)
    assert max(float(np.abs(o - e).max()) for o, e in zip(out, exact, strict=True)) <= bound


def test_negative_and_clipped_values(keys1024):
    pub, priv = keys1024
    params = CodecParams(key_bits=1024, clip=1.0).validate()
    w = [np.array([-0.75, -1.0, -0.001, 0.0, 0.5, -3.0, 7.0], dtype=np.float32)]
    enc = UpdateEncryptor(pub, params, workers=1)
    payload = enc.encrypt(w)
    assert enc.last_clipped == 2
    agg, _ = aggregate([payload], [10], params, pub.n)
    (out,) = AggregateDecryptor(priv, params, workers=1).decrypt(agg, [(7,)])
    expected = np.clip(w[0], -1, 1)
    assert np.all(np.abs(out - expected) <= params.step / 2 + 1e-7)
    assert out[0] < 0 and out[2] <= 0 and out[5] == pytest.approx(-1.0, abs=params.step)


def test_two_encryptions_of_the_same_update_differ(keys1024):
    pub, priv = keys1024
    params = CodecParams(key_bits=1024).validate()
    enc = UpdateEncryptor(pub, params, workers=2)
    w = model(3)
    a, b = enc.encrypt(w), enc.encrypt(w)
    np.testing.assert_array_equal(a[0], b[0])
    rows_a = {r.tobytes() for r in a[1]}
    assert rows_a.isdisjoint({r.tobytes() for r in b[1]})
    dec = AggregateDecryptor(priv, params, workers=2)
    out_a = dec.decrypt(aggregate([a], [5], params, pub.n)[0], SHAPES)
    out_b = dec.decrypt(aggregate([b], [5], params, pub.n)[0], SHAPES)
    for x, y in zip(out_a, out_b, strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.fixture
def setup1024(keys1024):
    pub, priv = keys1024
    params = CodecParams(key_bits=1024).validate()
    enc = UpdateEncryptor(pub, params, workers=1)
    shapes = [(10, 3), (4,)]
    payload = enc.encrypt([np.ones((10, 3), np.float32), np.zeros(4, np.float32)])
    agg, _ = aggregate([payload, payload], [1, 1], params, pub.n)
    return pub, priv, params, payload, agg, shapes


def test_decryptor_refuses_another_key(setup1024, other_keys1024):
    _, _, params, _, agg, shapes = setup1024
    with pytest.raises(WireFormatError, match="another public key"):
        AggregateDecryptor(other_keys1024[1], params, workers=1).decrypt(agg, shapes)


def test_decryptor_refuses_wrong_shapes(setup1024):
    _, priv, params, _, agg, _ = setup1024
    with pytest.raises(WireFormatError, match="34 values, the model has 35"):
        AggregateDecryptor(priv, params, workers=1).decrypt(agg, [(10, 3), (5,)])


def test_decryptor_refuses_a_single_client_update(setup1024):
    _, priv, params, payload, _, shapes = setup1024
    with pytest.raises(WireFormatError, match="not an aggregate"):
        AggregateDecryptor(priv, params, workers=1).decrypt(payload, shapes)


def test_decryptor_refuses_codec_mismatch(setup1024):
    _, priv, _, _, agg, shapes = setup1024
    other = CodecParams(key_bits=1024, value_bits=12).validate()
    with pytest.raises(WireFormatError, match="value_bits"):
        AggregateDecryptor(priv, other, workers=1).decrypt(agg, shapes)


def test_decryptor_refuses_ciphertext_out_of_range(setup1024):
    pub, priv, params, _, agg, shapes = setup1024
    h, cts = wire.unpack_payload(agg)
    bad = wire.pack_payload(h, [pub.nsquare + 1] + cts[1:])
    with pytest.raises(WireFormatError, match="out of range"):
        AggregateDecryptor(priv, params, workers=1).decrypt(bad, shapes)


def test_decryptor_refuses_overweighted_slot_sums(setup1024):
    """A header claiming a smaller weight_sum than used would decode silently wrong."""
    _, priv, params, _, agg, shapes = setup1024
    h, cts = wire.unpack_payload(agg)
    lying = wire.pack_payload(
        wire.Header(**{**h.__dict__, "weight_sum": 1, "n_contributors": 1}), cts
    )
    with pytest.raises(WireFormatError, match="exceeds its bound"):
        AggregateDecryptor(priv, params, workers=1).decrypt(lying, shapes)


def test_encryptor_refuses_key_of_another_size(keys512):
    with pytest.raises(ValueError, match="key_bits=1024"):
        UpdateEncryptor(keys512[0], CodecParams(key_bits=1024), workers=1)


def test_crypto_package_imports_neither_torch_nor_flwr():
    import subprocess
    import sys

    code = (
        "import sys, fedids.crypto.update, fedids.crypto.keys, fedids.crypto.vector; "
        "print(sorted(m for m in ('torch', 'flwr') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_encryptor_with_private_key_uses_crt_and_round_trips(keys1024, other_keys1024):
    pub, priv = keys1024
    params = CodecParams(key_bits=1024).validate()
    enc = UpdateEncryptor(pub, params, workers=2, private_key=priv)
    assert enc._store.factors == (priv.p, priv.q)
    enc.start_precompute(35)
    w = [np.linspace(-1, 1, 35, dtype=np.float32)]
    agg, _ = aggregate([enc.encrypt(w), enc.encrypt(w)], [3, 3], params, pub.n)
    (out,) = AggregateDecryptor(priv, params, workers=1).decrypt(agg, [(35,)])
    assert np.all(np.abs(out - w[0]) <= params.step / 2 + 1e-7)
    with pytest.raises(ValueError, match="does not belong"):
        UpdateEncryptor(pub, params, workers=1, private_key=other_keys1024[1])
