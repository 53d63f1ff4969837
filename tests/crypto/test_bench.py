"""The bench's measurements: consistent figures, and the command end to end on tiny data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fedids.bench import crypto as bench_crypto
from fedids.bench import time_naive, time_packed, upload_bytes
from fedids.crypto.codec import CodecParams

SHAPES = [(30, 4), (4,)]


def updates(k):
    rng = np.random.default_rng(k)
    return [[rng.normal(0, 0.2, s).astype(np.float32) for s in SHAPES] for _ in range(k)]


@pytest.mark.parametrize("workers, crt", [(1, False), (2, True)])
def test_time_packed_reports_consistent_figures(keys512, workers, crt):
    pub, priv = keys512
    params = CodecParams(key_bits=512).validate()
    r = time_packed(pub, priv, params, updates(2), [10, 30], workers=workers, crt=crt)
    assert r["n_values"] == 124 and r["n_ciphertexts"] == params.n_model_ciphertexts(124)
    assert r["max_abs_error"] <= r["error_bound"]
    assert r["total_seconds"] >= r["critical_path_with_precompute_seconds"] > 0
    assert r["client_seconds"] == pytest.approx(
        r["encrypt_seconds_per_client"] + r["decrypt_seconds"]
    )
    assert r["upload_bytes_per_client"] > r["n_ciphertexts"] * 128


def test_time_naive_extrapolates_from_a_sample(keys512):
    pub, priv = keys512
    r = time_naive(pub, priv, updates(2), [10, 30], sample=5)
    assert r["sample_values"] == 5 and r["n_values"] == 124
    assert r["max_abs_error"] < 1e-9
    assert r["upload_bytes_per_client"] == 124 * 128


def test_upload_bytes_counts_npy_and_metrics():
    a = [np.zeros(10, np.float32)]
    assert upload_bytes(a, {"k": "vv"}) == upload_bytes(a) + 3
    assert upload_bytes(a) > 40


def test_obfuscator_and_decryption_figures(keys512):
    pub, priv = keys512
    o = bench_crypto.obfuscator_costs(pub, priv, rounds=1)
    assert o["short_exponent_bits"] == 256 and o["fixed_base_crt_ms"] > 0
    d = bench_crypto.decrypt_floor(pub, priv, count=4, rounds=1)
    assert d["decrypt_ms_per_ciphertext"] > 0 and d["powmod_floor_ms_per_ciphertext"] > 0


def test_peers_compare_small(keys512):
    pytest.importorskip("tenseal")
    from fedids.bench import peers

    pub, priv = keys512
    params = CodecParams(key_bits=512).validate()
    r = peers.compare(pub, priv, params, updates(3), [10, 30, 5], workers=2, repeats=1)
    assert (
        r["ckks"]["max_abs_error"] < 1e-5
        and r["packed"]["max_abs_error"] <= (r["packed"]["error_bound"])
    )
    assert r["packed_upload_over_ckks"] < 0.1 and r["breakeven_link_mbit_per_s"] > 0
    assert r["ckks"]["n_ciphertexts"] == 1  # 124 values fit in 4096 slots


def test_bench_command_end_to_end_small(tmp_path, capsys):
    """`fedids bench` on a tiny dataset: every figure present, the table printed."""
    from fedids.cli import main

    out = tmp_path / "bench.json"
    argv = [
        "bench",
        "--json",
        str(out),
        "--rows",
        "3000",
        "--rounds",
        "1",
        "--naive-sample",
        "4",
        "--peer-repeats",
        "1",
        "--peer-clients",
        "2",
    ]
    assert main(argv) == 0
    result = json.loads(out.read_text())
    for key in (
        "paillier_over_plain_round_time",
        "paillier_over_plain_round_time_no_precompute",
        "packed_speedup_over_naive",
        "packed_speedup_over_naive_with_workers",
        "upload_bytes_over_float32",
        "fedavg_error_over_step_k10",
    ):
        assert result[key] > 0
    assert set(result["targets"]) == {
        "paillier_over_plain_round_time",
        "packed_speedup_over_naive",
        "upload_bytes_over_float32",
        "packed_client_over_ckks",
        "packed_upload_over_ckks",
        "fedavg_error_over_step_k10",
        "fedavg_relative_error_k100",
    }
    assert result["fedavg_relative_error_k100"] <= 0.01
    assert result["fedavg_error_over_step_k10"] <= 2
    packed = result["crypto"]["packed"]
    assert packed["max_abs_error"] <= packed["error_bound"]
    model = result["model"]  # the default model on the default encoding of the data
    assert model["parameters"] == sum(int(np.prod(s)) for s in model["shapes"])
    assert packed["n_ciphertexts"] == model["ciphertexts_per_update"]
    assert model["ciphertexts_per_update"] == CodecParams().n_model_ciphertexts(
        model["parameters"]
    )
    assert len(result["rounds"]["paillier"]["rounds"]) == 2
    over = result["paillier_round_overhead"]  # the parts add up to what the table prints
    assert over["without_training"] == pytest.approx(
        over["fit_besides_training"] + over["evaluate"] + over["aggregate"]
    )
    assert over["evaluate"] > 0  # a Paillier evaluation decrypts 166 ciphertexts first
    assert result["paillier_over_plain_round_time_paired"] > 0
    printed = capsys.readouterr().out
    assert "targets" in printed and "per-value phe" in printed and "Paillier adds" in printed


def test_bench_command_refuses_bad_counts(capsys):
    from fedids.cli import main

    assert main(["bench", "--json", "/dev/null", "--clients", "0"]) == 2
    assert ">= 1" in capsys.readouterr().err
