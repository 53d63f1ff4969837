"""PaillierFedAvg: share-weighted sums of ciphertexts, every bad payload refused, no private key."""

from __future__ import annotations

import builtins
import logging
import pathlib
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters
from flwr.common import parameters_to_ndarrays as to_arrays
from phe import paillier

from fedids import protocol
from fedids.crypto import keys as key_files
from fedids.crypto import vector, wire
from fedids.crypto.binding import Binding
from fedids.crypto.codec import CodecParams
from fedids.crypto.keys import fingerprint
from fedids.crypto.update import AggregateDecryptor, UpdateEncryptor
from strategies.fedids_base import AggregationError, Contribution
from strategies.paillier_fedavg import PaillierFedAvg

PARAMS = CodecParams(key_bits=1024).validate()
SHAPES = [(20, 5), (7,)]
RUN = 31


def weights(seed):
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 0.3, s).astype(np.float32) for s in SHAPES]


def model_binding(round_=1, run=RUN, kind=Binding.MODEL, tag=0):
    return Binding(run_id=run, round=round_, base_version=round_ - 1, kind=kind, tag=tag)


def encryptor(keys, params=PARAMS):
    pub, priv = keys
    return UpdateEncryptor(pub, params, workers=1, private_key=priv)


def fit_res(pub, arrays, **metric_overrides):
    metrics = {"pubkey_n": format(pub.n, "x"), "fingerprint": fingerprint(pub)}
    metrics.update({k: v for k, v in metric_overrides.items()})
    metrics = {k: v for k, v in metrics.items() if v is not None}
    return FitRes(Status(Code.OK, ""), ndarrays_to_parameters(arrays), 1, metrics)


def update(cid, keys, seed, share, *, round_=1, transform=None, binding=None, **metrics):
    arrays = encryptor(keys).encrypt_model(
        weights(seed), share=share, binding=binding or model_binding(round_)
    )
    if transform:
        arrays = transform(arrays)
    return SimpleNamespace(cid=cid), fit_res(keys[0], arrays, **metrics)


def strategy(**kw):
    kw.setdefault("min_fit_clients", 2)
    kw.setdefault("min_available_clients", 2)
    kw.setdefault("run_id", RUN)
    return PaillierFedAvg(codec=kw.pop("codec", PARAMS), **kw)


def decrypt(keys, parameters, round_=1, min_contributors=1):
    dec = AggregateDecryptor(keys[1], PARAMS, workers=1)
    return dec.decrypt_model(
        to_arrays(parameters),
        SHAPES,
        expect=model_binding(round_),
        min_contributors=min_contributors,
    )


def exact_average(seeds_counts):
    total = sum(c for _, c in seeds_counts)
    return [sum(weights(s)[i] * (c / total) for s, c in seeds_counts) for i in range(len(SHAPES))]


def test_sums_share_weighted_updates_exactly(keys):
    counts = [(1, 100), (2, 300), (3, 50)]
    total = sum(c for _, c in counts)
    results = [update(str(i), keys, s, c / total) for i, (s, c) in enumerate(counts)]
    params, metrics = strategy().aggregate_fit(1, results, [])
    assert metrics["fit_clients"] == 3 and metrics["rejected"] == 0
    out, info = decrypt(keys, params)
    assert info.contributors == 3 and info.share_total == pytest.approx(1.0, abs=1e-6)
    for o, e in zip(out, exact_average(counts), strict=True):
        assert float(np.abs(o - e).max()) <= 2 * PARAMS.step


def test_hundred_devices_of_unequal_size_within_one_percent(keys):
    """Issue 9: FedAvg at 100 devices stays within 1 % of the exact weighted average."""
    rng = np.random.default_rng(5)
    sizes = rng.integers(10, 100_000, size=100)
    total = int(sizes.sum())
    results = [update(str(i), keys, i, int(n) / total) for i, n in enumerate(sizes)]
    params, _ = strategy(min_fit_clients=100).aggregate_fit(1, results, [])
    out, info = decrypt(keys, params)
    assert info.contributors == 100
    exact = exact_average([(i, int(n)) for i, n in enumerate(sizes)])
    for o, e in zip(out, exact, strict=True):
        scale = float(np.abs(e).max())
        assert float(np.abs(o - e).max()) <= 0.01 * scale
        assert float(np.abs(o - e).max()) <= 2 * PARAMS.step


def test_server_never_touches_a_private_key(keys, monkeypatch, tmp_path):
    """Building, loading or using a private key, or opening a private key file, all fail."""
    results = [update("a", keys, 1, 0.25), update("b", keys, 2, 0.75)]

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
    assert metrics["fit_clients"] == 2
    monkeypatch.undo()
    out, _ = decrypt(keys, params)
    for o, e in zip(out, exact_average([(1, 1), (2, 3)]), strict=True):
        assert float(np.abs(o - e).max()) <= 2 * PARAMS.step


# -- bad payloads: each rejected, named in a WARNING, the round completes with the rest ---------
def _ciphertext(index_value):
    def transform(arrays):
        header, cts = wire.decode_payload(arrays)
        cts = list(cts)
        cts[0] = index_value(cts[0])
        return wire.encode_payload(header, cts)

    return transform


BAD_CASES = {
    "another key": (
        lambda keys, other: update("bad", other, 9, 0.5),
        "another public key",
    ),
    "ciphertext >= n^2": (
        lambda keys, other: update(
            "bad", keys, 9, 0.5, transform=_ciphertext(lambda c: keys[0].nsquare + 3)
        ),
        "out of range",
    ),
    "ciphertext not invertible": (
        lambda keys, other: update("bad", keys, 9, 0.5, transform=_ciphertext(lambda c: keys[0].n)),
        "not invertible",
    ),
    "wrong ciphertext shape": (
        lambda keys, other: update("bad", keys, 9, 0.5, transform=lambda a: [a[0], a[1][:, :-1]]),
        "uint8",
    ),
    "wrong header dtype": (
        lambda keys, other: update(
            "bad", keys, 9, 0.5, transform=lambda a: [a[0].astype(np.float64), a[1]]
        ),
        "not a fedids Paillier payload",
    ),
    "plaintext update": (
        lambda keys, other: update("bad", keys, 9, 0.5, transform=lambda a: weights(9)),
        "not a fedids Paillier payload",
    ),
    "fingerprint does not match key": (
        lambda keys, other: update("bad", keys, 9, 0.5, fingerprint="ab" * 32),
        "does not match",
    ),
    "metrics without key": (
        lambda keys, other: update("bad", keys, 9, 0.5, pubkey_n=None),
        "lack 'pubkey_n'",
    ),
    "codec mismatch": (
        lambda keys, other: (
            SimpleNamespace(cid="bad"),
            fit_res(
                keys[0],
                encryptor(keys, CodecParams(key_bits=1024, value_bits=12)).encrypt_model(
                    weights(9), share=0.5, binding=model_binding()
                ),
            ),
        ),
        "value_bits=12",
    ),
    "update for another run": (
        lambda keys, other: update("bad", keys, 9, 0.5, binding=model_binding(run=RUN + 1)),
        f"run_id={RUN + 1}",
    ),
    "update for another round": (
        lambda keys, other: update("bad", keys, 9, 0.5, binding=model_binding(round_=2)),
        "round=2",
    ),
    "statistics sent as a model": (
        lambda keys, other: (
            SimpleNamespace(cid="bad"),
            fit_res(
                keys[0],
                encryptor(keys).encrypt_counts(
                    np.arange(5), binding=Binding(RUN, 0, 0, Binding.STATS, 0)
                ),
            ),
        ),
        "kind",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_update_is_rejected_and_round_completes(case, keys, other_keys, caplog):
    make_bad, words = BAD_CASES[case]
    good = [update("a", keys, 1, 0.3), update("b", keys, 2, 0.3)]
    s = strategy(expected_fingerprint=fingerprint(keys[0]))
    with caplog.at_level(logging.WARNING):
        params, metrics = s.aggregate_fit(1, [good[0], make_bad(keys, other_keys), good[1]], [])
    assert metrics["fit_clients"] == 2 and metrics["rejected"] == 1
    [rejection] = s.last_rejections
    assert rejection.cid == "bad" and words in rejection.reason, rejection.reason
    assert "device bad" in caplog.text
    out, info = decrypt(keys, params)
    assert info.contributors == 2


def test_replayed_update_is_rejected_under_another_id_and_in_another_round(keys):
    a, b = update("a", keys, 1, 0.5), update("b", keys, 2, 0.5)
    s = strategy()
    s.aggregate_fit(1, [a, b], [])
    c = update("c", keys, 3, 0.5)
    replay = (SimpleNamespace(cid="mallory"), a[1])
    with pytest.raises(AggregationError, match="device mallory: replay"):
        s.aggregate_fit(1, [c, replay], [])
    fresh = [update("a", keys, 4, 0.5, round_=2), update("b", keys, 5, 0.5, round_=2)]
    _, metrics = s.aggregate_fit(2, [*fresh, (SimpleNamespace(cid="x"), a[1])], [])
    assert metrics["fit_clients"] == 2
    assert "round=1 (expected 2)" in s.last_rejections[0].reason or "replay" in (
        s.last_rejections[0].reason
    )


def test_second_update_from_the_same_device_is_rejected(keys):
    s = strategy()
    _, metrics = s.aggregate_fit(
        1, [update("a", keys, 1, 0.4), update("a", keys, 2, 0.4), update("b", keys, 3, 0.2)], []
    )
    assert metrics["fit_clients"] == 2
    assert "second payload" in s.last_rejections[0].reason


def test_too_few_valid_updates_say_why(keys, other_keys):
    s = strategy(expected_fingerprint=fingerprint(keys[0]))
    with pytest.raises(AggregationError) as err:
        s.aggregate_fit(
            1,
            [update("a", keys, 1, 0.5), update("b", other_keys, 2, 0.5)],
            [RuntimeError("device lost")],
        )
    text = str(err.value)
    assert "1 valid encrypted updates of 2 received, at least 2 needed" in text
    assert "device b: encrypted under another public key" in text and "device lost" in text


def test_without_expected_fingerprint_the_first_key_is_the_runs_key(keys, other_keys):
    s = strategy(min_fit_clients=1)
    s.aggregate_fit(1, [update("a", keys, 1, 0.5)], [])
    _, metrics = s.aggregate_fit(
        2, [update("b", other_keys, 2, 0.5, round_=2), update("a", keys, 3, 0.5, round_=2)], []
    )
    assert metrics["fit_clients"] == 1
    assert "another public key" in s.last_rejections[0].reason


def test_sampling_and_sums_are_capped_at_max_clients(keys):
    small = CodecParams(key_bits=1024, max_clients=2).validate()
    s = strategy(codec=small, min_fit_clients=1)
    assert s.num_fit_clients(10) == (2, 2)
    results = []
    for cid, seed in (("a", 1), ("b", 2), ("c", 3)):
        arrays = encryptor(keys, small).encrypt_model(
            weights(seed), share=0.3, binding=model_binding()
        )
        results.append((SimpleNamespace(cid=cid), fit_res(keys[0], arrays)))
    _, metrics = s.aggregate_fit(1, results, [])
    assert metrics["fit_clients"] == 2 and "max_clients" in s.last_rejections[0].reason


def test_count_vectors_are_summed_for_the_devices(keys):
    s = strategy()
    enc = encryptor(keys)
    contributions = [
        Contribution(
            cid,
            enc.encrypt_counts(np.array(v), binding=Binding(RUN, 0, 0, Binding.STATS, 1)),
            {"pubkey_n": format(keys[0].n, "x"), "fingerprint": fingerprint(keys[0])},
        )
        for cid, v in (("a", [1, 2, 3]), ("b", [10, 0, 5]))
    ]
    payload = s.aggregate_counts(
        contributions, kind=protocol.KIND_STATS, tag=1, server_round=0, min_needed=2
    )
    dec = AggregateDecryptor(keys[1], PARAMS, workers=1)
    counts, info = dec.decrypt_counts(payload, 3, expect=Binding(RUN, 0, 0, Binding.STATS, 1))
    assert counts.tolist() == [11, 2, 8] and info.contributors == 2


def test_no_central_evaluation(keys):
    assert strategy().evaluate(1, ndarrays_to_parameters([])) is None
    with pytest.raises(ValueError, match="cannot evaluate centrally"):
        strategy(evaluate_fn=lambda *a: None)


def test_strategy_modules_import_no_torch():
    import subprocess

    code = (
        "import sys, strategies.paillier_fedavg, strategies.plain_fedavg, fedids.server_app;"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
