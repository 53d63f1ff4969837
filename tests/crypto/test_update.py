"""Device facade, protocol v2: pre-weighted models and count vectors through a real sum."""

from __future__ import annotations

import numpy as np
import pytest

from fedids.crypto import wire
from fedids.crypto.codec import Binding, CodecParams
from fedids.crypto.update import AggregateDecryptor, UpdateEncryptor, WireFormatError
from strategies.homomorphic import parse_update, sum_updates

SHAPES = [(41, 64), (64,), (64,), (64,), (64, 32), (32,), (32,), (32,), (32, 5), (5,)]
B = Binding(run_id=11, round=4, base_version=3, kind=Binding.MODEL)
STATS = Binding(run_id=11, round=0, base_version=0, kind=Binding.STATS, tag=0)


def model(seed: int, scale: float = 0.5) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(0.0, scale, s).astype(np.float32) for s in SHAPES]


def server_sum(payloads, params, n, binding=B, multipliers=None):
    parsed = [parse_update(p, params=params, n=n) for p in payloads]
    return sum_updates(parsed, multipliers or [1] * len(parsed), binding=binding)


def exact_fedavg(models, weights):
    total = float(sum(weights))
    return [
        sum(
            np.clip(m[i].astype(np.float64), -4, 4) * (w / total)
            for m, w in zip(models, weights, strict=True)
        )
        for i in range(len(models[0]))
    ]


def max_err(out, exact):
    return max(float(np.abs(o - e).max()) for o, e in zip(out, exact, strict=True))


def test_full_model_round_trip_at_2048_bits(keys2048):
    pub, priv = keys2048
    params = CodecParams().validate()
    models, counts = [model(1), model(2), model(3)], [1000, 3000, 17]
    enc = UpdateEncryptor(pub, params, workers=2, private_key=priv)
    n_values = sum(int(np.prod(s)) for s in SHAPES)
    enc.start_precompute(params.n_model_ciphertexts(n_values))
    payloads = [
        enc.encrypt_model(m, share=c / 5000, binding=B) for m, c in zip(models, counts, strict=True)
    ]
    assert payloads[0][1].shape == (58, 512)  # 5125 values: 58 ciphertexts of 2*256 bytes
    assert enc.last_stats.n_ciphertexts == 58
    agg = server_sum(payloads, params, pub.n)
    out, info = AggregateDecryptor(priv, params, workers=2).decrypt_model(
        agg, SHAPES, expect=B, min_contributors=3
    )
    assert [o.shape for o in out] == SHAPES and all(o.dtype == np.float32 for o in out)
    assert info.contributors == 3 and info.binding == B and info.multiplier_total == 3
    assert info.share_total == pytest.approx(4017 / 5000, abs=1e-9)  # one device did not send
    err = max_err(out, exact_fedavg(models, counts))
    assert err <= info.error_bound <= params.step


def test_staleness_multipliers_weight_by_share_times_multiplier(keys1024):
    pub, priv = keys1024
    params = CodecParams(key_bits=1024, max_multiplier=4).validate()
    enc = UpdateEncryptor(pub, params, workers=1, private_key=priv)
    models, shares, mults = [model(5), model(6)], [0.3, 0.7], [4, 1]
    payloads = [
        enc.encrypt_model(m, share=s, binding=B) for m, s in zip(models, shares, strict=True)
    ]
    assert payloads[0][1].shape[0] == params.n_model_ciphertexts(5125)  # incl. the meta one
    agg = server_sum(payloads, params, pub.n, multipliers=mults)
    out, info = AggregateDecryptor(priv, params, workers=1).decrypt_model(agg, SHAPES)
    assert info.contributors == 2 and info.multiplier_total == 5  # not inflated to 5 devices
    assert info.share_total == pytest.approx(4 * 0.3 + 0.7, abs=1e-9)
    assert max_err(out, exact_fedavg(models, [1.2, 0.7])) <= info.error_bound


def test_counts_round_trip(keys1024):
    pub, priv = keys1024
    params = CodecParams(key_bits=1024).validate()
    enc = UpdateEncryptor(pub, params, workers=1, private_key=priv)
    vectors = [np.arange(200, dtype=np.int64) * k for k in (1, 2, 5)]
    agg = server_sum([enc.encrypt_counts(v, binding=STATS) for v in vectors], params, pub.n, STATS)
    total, info = AggregateDecryptor(priv, params, workers=1).decrypt_counts(
        agg, 200, expect=STATS, min_contributors=2
    )
    np.testing.assert_array_equal(total, np.arange(200) * 8)
    assert total.dtype == np.int64 and info.contributors == 3 and info.binding == STATS
    with pytest.raises(ValueError, match="counts must be in"):
        enc.encrypt_counts(np.array([2**32]), binding=STATS)
    with pytest.raises(ValueError, match="STATS or EVAL"):
        enc.encrypt_counts(np.array([1]), binding=B)
    with pytest.raises(ValueError, match="MODEL"):
        enc.encrypt_model([np.zeros(3)], share=0.5, binding=STATS)


@pytest.fixture(scope="module")
def small(keys1024):
    pub, priv = keys1024
    params = CodecParams(key_bits=1024, max_clients=8).validate()
    enc = UpdateEncryptor(pub, params, workers=1, private_key=priv)
    dec = AggregateDecryptor(priv, params, workers=1)
    w = [np.linspace(-1, 1, 30, dtype=np.float32).reshape(10, 3), np.zeros(4, np.float32)]
    payloads = [enc.encrypt_model(w, share=0.25, binding=B) for _ in range(2)]
    return pub, priv, params, enc, dec, w, payloads


SMALL = [(10, 3), (4,)]


def test_decryptor_refuses_other_binding_and_too_few_contributors(small):
    pub, _, params, _, dec, _, payloads = small
    agg = server_sum(payloads, params, pub.n)
    with pytest.raises(WireFormatError, match=r"round=4 \(expected 5\).*replayed"):
        dec.decrypt_model(agg, SMALL, expect=Binding(11, 5, 4, Binding.MODEL))
    with pytest.raises(WireFormatError, match="2 contributor\\(s\\).*at least 3"):
        dec.decrypt_model(agg, SMALL, min_contributors=3)
    with pytest.raises(WireFormatError, match="not a count aggregate"):
        dec.decrypt_counts(agg, 34)
    with pytest.raises(WireFormatError, match="holds 34 values, expected 35"):
        dec.decrypt_model(agg, [(10, 3), (5,)])
    with pytest.raises(WireFormatError, match="single device's update"):
        dec.decrypt_model(payloads[0], SMALL)


def test_rewritten_header_cannot_replay_an_old_update(small):
    """A relay rewrites an old round's update header to the current round: the server cannot
    tell, but the binding tag inside the plaintext no longer matches, so devices refuse."""
    pub, _, params, enc, dec, w, payloads = small
    old = enc.encrypt_model(w, share=0.25, binding=Binding(11, 3, 2, Binding.MODEL))
    head = old[0].copy()
    fields = list(wire.HEADER_FIELDS)
    head[fields.index("round")], head[fields.index("base_version")] = 4, 3
    agg = server_sum([payloads[0], [head, old[1]]], params, pub.n)  # the server accepts it
    with pytest.raises(WireFormatError, match="binding tag does not match"):
        dec.decrypt_model(agg, SMALL, expect=B)


def test_header_claiming_more_contributors_is_refused(small):
    pub, _, params, _, dec, _, payloads = small
    agg = server_sum(payloads[:1], params, pub.n)
    head = agg[0].copy()
    head[list(wire.HEADER_FIELDS).index("n_updates")] = 3
    with pytest.raises(WireFormatError, match="claims 3 contributors, the encrypted count is 1"):
        dec.decrypt_model([head, agg[1]], SMALL)


def test_decryptor_refuses_another_key_and_codec(small, other_keys1024):
    pub, _, params, _, _, _, payloads = small
    agg = server_sum(payloads, params, pub.n)
    with pytest.raises(WireFormatError, match="another public key"):
        AggregateDecryptor(other_keys1024[1], params, workers=1).decrypt_model(agg, SMALL)
    other = CodecParams(key_bits=1024, max_clients=16).validate()
    with pytest.raises(WireFormatError, match="max_clients=8 \\(expected 16\\)"):
        AggregateDecryptor(small[1], other, workers=1).decrypt_model(agg, SMALL)


def test_encryptor_without_private_key_needs_the_device_tag(small):
    pub, priv, params, _, dec, w, payloads = small
    service = UpdateEncryptor(pub, params, workers=1)  # an EaaS: public key only
    with pytest.raises(ValueError, match="pass the binding tag"):
        service.encrypt_model(w, share=0.25, binding=B)
    remote = service.encrypt_model(w, share=0.25, binding=B, tag=dec.binding_tag(B))
    out, info = dec.decrypt_model(server_sum([payloads[0], remote], params, pub.n), SMALL)
    assert info.contributors == 2
    assert float(np.abs(out[0] - w[0]).max()) <= info.error_bound


def test_two_encryptions_of_the_same_update_share_no_ciphertext(small):
    _, _, _, enc, _, w, _ = small
    a, b = (enc.encrypt_model(w, share=0.5, binding=B) for _ in range(2))
    np.testing.assert_array_equal(a[0], b[0])
    assert {r.tobytes() for r in a[1]}.isdisjoint({r.tobytes() for r in b[1]})


def test_reprs_show_no_key_material(small):
    pub, priv, _, enc, dec, _, _ = small
    for text in (repr(enc), repr(dec)):
        for secret in (priv.p, priv.q, pub.n):
            assert format(secret, "x")[:16] not in text and str(secret)[:16] not in text


def test_encryptor_refuses_a_key_of_another_size_or_owner(keys512, keys1024, other_keys1024):
    with pytest.raises(ValueError, match="key_bits=1024"):
        UpdateEncryptor(keys512[0], CodecParams(key_bits=1024), workers=1)
    with pytest.raises(ValueError, match="does not belong"):
        UpdateEncryptor(
            keys1024[0], CodecParams(key_bits=1024), workers=1, private_key=other_keys1024[1]
        )


def test_negative_and_clipped_values_with_crt_obfuscators(keys1024):
    pub, priv = keys1024
    params = CodecParams(key_bits=1024, clip=1.0).validate()
    enc = UpdateEncryptor(pub, params, workers=1, private_key=priv)
    assert enc._store.factors == (priv.p, priv.q)
    w = [np.array([-0.75, -1.0, -0.001, 0.0, 0.5, -3.0, 7.0], dtype=np.float32)]
    payload = enc.encrypt_model(w, share=1.0, binding=B)
    assert enc.last_clipped == 2
    (out,), info = AggregateDecryptor(priv, params, workers=1).decrypt_model(
        server_sum([payload], params, pub.n), [(7,)]
    )
    assert float(np.abs(out - np.clip(w[0], -1, 1)).max()) <= info.error_bound
    assert out[0] < 0 and out[2] <= 0 and out[5] == pytest.approx(-1.0, abs=params.step)


def test_crypto_package_imports_neither_torch_nor_flwr():
    import subprocess
    import sys

    code = (
        "import sys, fedids.crypto.update, fedids.crypto.keys, fedids.crypto.vector, "
        "strategies.homomorphic; "
        "print(sorted(m for m in ('torch', 'flwr') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
