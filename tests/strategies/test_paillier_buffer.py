"""Buffered aggregation over Paillier: stale updates weigh less, decoded exactly by devices."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters
from flwr.common import parameters_to_ndarrays as to_arrays

from fedids.crypto.binding import Binding
from fedids.crypto.codec import CodecParams
from fedids.crypto.keys import fingerprint
from fedids.crypto.update import AggregateDecryptor, UpdateEncryptor
from strategies.buffered_fedavg import UpdateRejected, buffer_aggregator
from strategies.paillier_buffer import PaillierBuffer
from strategies.paillier_fedavg import PaillierFedAvg

PARAMS = CodecParams(key_bits=1024, max_multiplier=4).validate()
SHAPES = [(20, 5), (7,)]
RUN = 31


def weights(seed):
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 0.3, s).astype(np.float32) for s in SHAPES]


def model_binding(version, base):
    return Binding(run_id=RUN, round=version, base_version=base, kind=Binding.MODEL, tag=0)


def encrypted(keys, seed, share, base, bound_to=None, params=PARAMS):
    pub, priv = keys
    enc = UpdateEncryptor(pub, params, workers=1, private_key=priv)
    binding = model_binding(bound_to or base + 1, base)
    arrays = enc.encrypt_model(weights(seed), share=share, binding=binding)
    metrics = {"pubkey_n": format(pub.n, "x"), "fingerprint": fingerprint(pub)}
    return FitRes(Status(Code.OK, ""), ndarrays_to_parameters(arrays), 1, metrics)


def buffer(params=PARAMS, max_multiplier=4):
    strategy = PaillierFedAvg(codec=params, run_id=RUN, min_fit_clients=2)
    return buffer_aggregator(strategy, {"max_multiplier": max_multiplier})


def test_staleness_multipliers_weight_the_encrypted_average(keys):
    buf = buffer()
    assert isinstance(buf, PaillierBuffer)
    counts = {1: 100, 2: 300, 3: 50}
    total = sum(counts.values())
    # devices 1 and 3 trained on version 4 (fresh for version 5); device 2 trained on
    # version 3 and re-bound its update to version 5 (every update of an aggregate must be
    # encrypted for that version: the keyed tags inside add up only then)
    bases = {1: 4, 2: 3, 3: 4}
    mults = {1: 4, 2: 3, 3: 4}
    updates = [
        buf.check(str(s), encrypted(keys, s, counts[s] / total, bases[s], 5), bases[s], 5)
        for s in (1, 2, 3)
    ]
    assert all(u.num_examples == 1 for u in updates)  # no count in the clear
    params = buf.aggregate(5, updates, [mults[s] for s in (1, 2, 3)])
    dec = AggregateDecryptor(keys[1], PARAMS, workers=1)
    out, info = dec.decrypt_model(
        to_arrays(params), SHAPES, expect=model_binding(5, 4), min_contributors=3
    )
    assert info.contributors == 3  # counted inside the encryption, not multiplied
    norm = sum(mults[s] * counts[s] for s in counts)
    expected = [
        sum(weights(s)[i] * mults[s] * counts[s] / norm for s in counts) for i in range(len(SHAPES))
    ]
    for got, want in zip(out, expected, strict=True):
        np.testing.assert_allclose(got, want, atol=4 * PARAMS.step)


def test_a_stale_update_must_be_rebound_to_the_version_it_joins(keys):
    buf = buffer()
    late = encrypted(keys, 2, 0.5, base=3)  # encrypted for version 4
    with pytest.raises(UpdateRejected, match="round=4 \\(expected 5\\)"):
        buf.check("b", late, 3, bound_to=5)


def test_binding_must_match_the_version_the_server_sent(keys):
    buf = buffer()
    res = encrypted(keys, 1, 0.5, base=3)
    with pytest.raises(UpdateRejected, match="base"):
        buf.check("a", res, base_version=2)  # the server sent version 2, not 3
    buf.check("a", res, base_version=3)
    with pytest.raises(UpdateRejected, match="replay"):
        buf.check("b", res, base_version=3)  # the same ciphertexts under another device id


def test_replayed_update_of_an_earlier_version_is_refused(keys):
    buf = buffer()
    first = encrypted(keys, 1, 0.5, base=0)
    u = buf.check("a", first, 0)
    v = buf.check("b", encrypted(keys, 2, 0.5, base=0), 0)
    buf.aggregate(1, [u, v], [4, 4])
    with pytest.raises(UpdateRejected, match="replay"):
        buf.check("a", first, 0)


def test_multipliers_beyond_the_codec_bound_are_refused(keys):
    with pytest.raises(ValueError, match="mode.max_multiplier=1"):
        buffer(params=CodecParams(key_bits=1024).validate(), max_multiplier=4)
    buf = buffer(max_multiplier=2)
    u = buf.check("a", encrypted(keys, 1, 0.5, base=0), 0)
    with pytest.raises(ValueError, match=r"outside \[1, 2\]"):
        buf.aggregate(1, [u], [3])
