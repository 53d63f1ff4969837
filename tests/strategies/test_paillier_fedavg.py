"""PaillierFedAvg: homomorphic weighted FedAvg, rejection of bad updates, no private key."""

from __future__ import annotations

import builtins
import logging
import pathlib
from types import SimpleNamespace

import numpy as np
import pytest
from flwr.common import Code, FitRes, Parameters, Status, ndarrays_to_parameters
from flwr.common import parameters_to_ndarrays as to_arrays
from phe import paillier

from fedids.crypto import codec, vector, wire
from fedids.crypto import keys as key_files
from fedids.crypto.codec import CodecParams
from fedids.crypto.keys import fingerprint
from fedids.crypto.update import AggregateDecryptor, UpdateEncryptor, is_encrypted_payload
from strategies.paillier_fedavg import InsufficientValidUpdatesError, PaillierFedAvg

PARAMS = CodecParams(key_bits=1024).validate()
SHAPES = [(20, 5), (7,)]


def weights(seed):
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 0.3, s).astype(np.float32) for s in SHAPES]


def fit_res(pub, arrays, n, pid, **metric_overrides):
    metrics = {"pubkey_n": format(pub.n, "x"), "fingerprint": fingerprint(pub), "partition_id": pid}
    metrics.update(metric_overrides)
    return FitRes(Status(Code.OK, ""), ndarrays_to_parameters(arrays), n, metrics)


def client(cid, pub, seed, n, pid, transform=None, **metric_overrides):
    arrays = UpdateEncryptor(pub, PARAMS, workers=1).encrypt(weights(seed))
    if transform:
        arrays = transform(arrays)
    return SimpleNamespace(cid=cid), fit_res(pub, arrays, n, pid, **metric_overrides)


def strategy(**kw):
    kw.setdefault("min_fit_clients", 2)
    kw.setdefault("min_available_clients", 2)
    return PaillierFedAvg(codec=PARAMS, **kw)


def decrypt(priv, parameters):
    return AggregateDecryptor(priv, PARAMS, workers=1).decrypt(to_arrays(parameters), SHAPES)


def assert_average_of(out, seeds_counts):
    total = sum(c for _, c in seeds_counts)
    exact = [sum(weights(s)[i] * (c / total) for s, c in seeds_counts) for i in range(len(SHAPES))]
    counts = [c for _, c in seeds_counts]
    bound = codec.error_bound(PARAMS, counts)
    for o, e in zip(out, exact, strict=True):
        assert float(np.abs(o - e).max()) <= bound


def test_aggregates_weighted_by_examples(keys):
    pub, priv = keys
    s = strategy(fit_metrics_aggregation_fn=lambda r: {"fit_clients": len(r)})
    results = [client("a", pub, 1, 100, 0), client("b", pub, 2, 300, 1), client("c", pub, 3, 50, 2)]
    params, metrics = s.aggregate_fit(1, results, [])
    arrays = to_arrays(params)
    assert is_encrypted_payload(arrays)
    header = wire.Header.from_array(arrays[0])
    assert header.n_contributors == 3 and header.weight_sum == metrics["paillier_weight_sum"]
    assert header.weight_sum <= PARAMS.max_weight_sum
    assert metrics["paillier_accepted"] == 3 and metrics["paillier_rejected"] == 0
    assert metrics["fit_clients"] == 3
    assert_average_of(decrypt(priv, params), [(1, 100), (2, 300), (3, 50)])


def test_server_never_touches_a_private_key(keys, monkeypatch, tmp_path):
    """Building, loading or using a private key, or opening a private key file, all fail.

    The key fixture exists beforehand (clients need it); only aggregate_fit runs guarded.
    """
    pub, priv = keys
    results = [client("a", pub, 1, 10, 0), client("b", pub, 2, 20, 1)]

    def forbidden(*args, **kwargs):
        raise AssertionError("the server touched a private key")

    monkeypatch.setattr(paillier.PaillierPrivateKey, "__init__", forbidden)
    monkeypatch.setattr(paillier.PaillierPrivateKey, "raw_decrypt", forbidden)
    monkeypatch.setattr(paillier.PaillierPrivateKey, "decrypt", forbidden)
    for name in ("load_private_key", "ensure_keypair", "generate_keypair"):
        monkeypatch.setattr(key_files, name, forbidden)
    monkeypatch.setattr(vector, "decrypt_chunk", forbidden)
    monkeypatch.setattr(vector, "decrypt_many", forbidden)
    real_open = builtins.open

    def guarded_open(file, *args, **kwargs):
        if "private" in str(file):
            raise AssertionError(f"the server opened {file}")
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(pathlib.Path, "read_text", forbidden)
    monkeypatch.chdir(tmp_path)
    params, metrics = strategy().aggregate_fit(1, results, [])
    assert metrics["paillier_accepted"] == 2
    monkeypatch.undo()
    assert_average_of(decrypt(priv, params), [(1, 10), (2, 20)])


# -- bad updates: each rejected, named in a WARNING, the round completes with the rest ----------
def _swap_ciphertext_out_of_range(pub):
    def transform(arrays):
        h, cts = wire.unpack_payload(arrays)
        return wire.pack_payload(h, [pub.nsquare + 3] + cts[1:])

    return transform


def _not_invertible(pub):
    def transform(arrays):
        h, cts = wire.unpack_payload(arrays)
        return wire.pack_payload(h, [pub.n] + cts[1:])

    return transform


def _drop_last_value(arrays):
    h, cts = wire.unpack_payload(arrays)
    n_values = sum(int(np.prod(s)) for s in SHAPES) - 1
    return [wire.Header(**{**h.__dict__, "n_values": n_values}).to_array(), arrays[1]]


def _other_size_model(pub):
    enc = UpdateEncryptor(pub, PARAMS, workers=1)
    return lambda arrays: enc.encrypt([np.zeros(500, np.float32)])


BAD_CASES = {
    "another key": (
        lambda pub, other: client("bad", other, 9, 100, 7),
        "another public key",
    ),
    "ciphertext >= n^2": (
        lambda pub, other: client("bad", pub, 9, 100, 7, _swap_ciphertext_out_of_range(pub)),
        "out of range",
    ),
    "ciphertext not invertible": (
        lambda pub, other: client("bad", pub, 9, 100, 7, _not_invertible(pub)),
        "not invertible",
    ),
    "wrong ciphertext shape": (
        lambda pub, other: client("bad", pub, 9, 100, 7, lambda a: [a[0], a[1][:, :-1]]),
        "must be uint8 of shape",
    ),
    "wrong ciphertext count": (
        lambda pub, other: client("bad", pub, 9, 100, 7, lambda a: [a[0], a[1][:-1]]),
        "must be uint8 of shape",
    ),
    "wrong length (other model size)": (
        lambda pub, other: client("bad", pub, 9, 100, 7, _other_size_model(pub)),
        "500 values, the model has 107",
    ),
    "header length field off by one": (
        lambda pub, other: client("bad", pub, 9, 100, 7, _drop_last_value),
        "106 values, the model has 107",
    ),
    "wrong header dtype": (
        lambda pub, other: client("bad", pub, 9, 100, 7, lambda a: [a[0].astype(np.float64), a[1]]),
        "not a fedids Paillier payload",
    ),
    "plaintext update": (
        lambda pub, other: client("bad", pub, 9, 100, 7, lambda a: weights(9)),
        "not a fedids Paillier payload",
    ),
    "fingerprint does not match key": (
        lambda pub, other: client("bad", pub, 9, 100, 7, fingerprint="ab" * 32),
        "does not match",
    ),
    "metrics without key": (
        lambda pub, other: client("bad", pub, 9, 100, 7, pubkey_n=None),
        "lack 'pubkey_n'",
    ),
    "zero examples": (
        lambda pub, other: client("bad", pub, 9, 0, 7),
        "num_examples=0",
    ),
    "codec mismatch": (
        lambda pub, other: (
            SimpleNamespace(cid="bad"),
            fit_res(
                pub,
                UpdateEncryptor(pub, CodecParams(key_bits=1024, value_bits=12), workers=1).encrypt(
                    weights(9)
                ),
                100,
                7,
            ),
        ),
        "value_bits=12",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_update_is_rejected_and_round_completes(case, keys, other_keys, caplog):
    pub, priv = keys
    make_bad, words = BAD_CASES[case]
    good = [client("a", pub, 1, 100, 0), client("b", pub, 2, 300, 1)]
    results = [good[0], make_bad(pub, other_keys[0]), good[1]]
    s = strategy()
    with caplog.at_level(logging.WARNING, logger="flwr"):
        params, metrics = s.aggregate_fit(3, results, [])
    assert metrics["paillier_accepted"] == 2 and metrics["paillier_rejected"] == 1
    [rejection] = s.last_rejections
    assert rejection.cid == "bad" and words in rejection.reason
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("cid=bad" in m and "partition_id=7" in m and words in m for m in warnings), warnings
    assert_average_of(decrypt(priv, params), [(1, 100), (2, 300)])


def test_second_update_from_the_same_client_is_rejected(keys, caplog):
    pub, priv = keys
    results = [
        client("a", pub, 1, 100, 0),
        client("b", pub, 2, 300, 1),
        client("a", pub, 5, 900, 0),
    ]
    s = strategy()
    with caplog.at_level(logging.WARNING, logger="flwr"):
        params, metrics = s.aggregate_fit(2, results, [])
    assert metrics["paillier_rejected"] == 1
    assert any(
        "cid=a" in r.getMessage() and "second update" in r.getMessage() for r in caplog.records
    )
    assert_average_of(decrypt(priv, params), [(1, 100), (2, 300)])


def test_too_few_valid_updates_raise_a_clear_error(keys, other_keys):
    pub, _ = keys
    results = [client("a", pub, 1, 100, 0), client("x", other_keys[0], 2, 300, 1)]
    results.append(client("y", pub, 3, 10, 2, lambda a: [a[0], a[1][:1]]))
    s = strategy(min_fit_clients=2, expected_fingerprint=fingerprint(pub))
    with pytest.raises(InsufficientValidUpdatesError) as err:
        s.aggregate_fit(4, results, [])
    message = str(err.value)
    assert "2 of 3 updates rejected" in message and "min_fit_clients=2" in message
    assert "cid=x" in message and "another public key" in message
    assert "cid=y" in message and "uint8 of shape" in message


def test_expected_fingerprint_beats_the_majority(keys, other_keys):
    pub, _ = keys
    other = other_keys[0]
    results = [client("a", other, 1, 1, 0), client("b", other, 2, 1, 1), client("c", pub, 3, 1, 2)]
    s = strategy(min_fit_clients=1, expected_fingerprint=fingerprint(pub).upper())
    _, metrics = s.aggregate_fit(1, results, [])
    assert metrics["paillier_accepted"] == 1 and metrics["paillier_rejected"] == 2
    assert metrics["paillier_key_fingerprint"] == fingerprint(pub)


def test_without_expected_fingerprint_majority_wins_then_key_is_pinned(keys, other_keys):
    pub, _ = keys
    other = other_keys[0]
    s = strategy(min_fit_clients=1)
    results = [client("a", other, 1, 1, 0), client("b", pub, 2, 1, 1), client("c", pub, 3, 1, 2)]
    _, metrics = s.aggregate_fit(1, results, [])
    assert metrics["paillier_key_fingerprint"] == fingerprint(pub)
    assert [r.cid for r in s.last_rejections] == ["a"]
    # round 2: the other key is now the majority, but the key was pinned in round 1
    results = [client("a", other, 1, 1, 0), client("b", other, 2, 1, 1), client("c", pub, 3, 1, 2)]
    _, metrics = s.aggregate_fit(2, results, [])
    assert metrics["paillier_key_fingerprint"] == fingerprint(pub)
    assert {r.cid for r in s.last_rejections} == {"a", "b"}
    assert "pinned" in s.last_rejections[0].reason


def test_failures_are_not_aggregated_when_not_accepted(keys):
    pub, _ = keys
    s = strategy(accept_failures=False)
    results = [client("a", pub, 1, 1, 0), client("b", pub, 2, 1, 1)]
    assert s.aggregate_fit(1, results, [RuntimeError("x")]) == (None, {})
    assert s.aggregate_fit(1, [], []) == (None, {})


def test_more_valid_updates_than_max_clients_is_an_error(keys):
    pub, _ = keys
    s = strategy(min_fit_clients=1)
    s.codec = CodecParams(key_bits=1024, max_clients=2).validate()
    results = [client(c, pub, i, 1, i) for i, c in enumerate("abc")]
    with pytest.raises(RuntimeError, match="max_clients=2"):
        s.aggregate_fit(1, results, [])


def test_no_central_evaluation(keys):
    s = strategy()
    assert s.evaluate(1, Parameters(tensors=[], tensor_type="numpy.ndarray")) is None
    with pytest.raises(ValueError, match="cannot evaluate centrally"):
        strategy(evaluate_fn=lambda *a: (0.0, {}))


def test_strategy_module_imports_no_torch():
    import subprocess
    import sys

    code = (
        "import sys, strategies.paillier_fedavg, fedids.crypto.update, fedids.crypto.keys; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
