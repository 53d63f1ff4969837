"""The bench's crypto-only measurements (the round part needs the product's client)."""

from __future__ import annotations

import numpy as np

from fedids.bench import time_naive, time_packed, upload_bytes
from fedids.crypto.codec import CodecParams

SHAPES = [(30, 4), (4,)]


def updates(k):
    rng = np.random.default_rng(k)
    return [[rng.normal(0, 0.2, s).astype(np.float32) for s in SHAPES] for _ in range(k)]


def test_time_packed_reports_consistent_figures(keys512):
    pub, priv = keys512
    params = CodecParams(key_bits=512).validate()
    r = time_packed(pub, priv, params, updates(2), [10, 30], workers=2)
    assert r["n_values"] == 124 and r["n_ciphertexts"] == params.n_ciphertexts(124)
    assert r["max_abs_error"] <= r["error_bound"]
    assert r["total_seconds"] >= r["critical_path_with_precompute_seconds"] > 0
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


def test_bench_command_end_to_end_small(tmp_path, capsys):
    """`fedids bench` on a tiny dataset: every figure present, the table printed."""
    import json

    from fedids.cli import main

    out = tmp_path / "bench.json"
    argv = ["bench", "--json", str(out), "--rows", "3000", "--rounds", "1", "--naive-sample", "4"]
    assert main(argv) == 0
    result = json.loads(out.read_text())
    for key in (
        "paillier_over_plain_round_time",
        "paillier_over_plain_round_time_no_precompute",
        "packed_speedup_over_naive",
        "packed_speedup_over_naive_with_workers",
        "upload_bytes_over_float32",
    ):
        assert result[key] > 0
    assert set(result["targets"]) == {
        "paillier_over_plain_round_time",
        "packed_speedup_over_naive",
        "upload_bytes_over_float32",
    }
    assert result["upload_bytes_over_float32"] < 1.5
    packed = result["crypto"]["packed"]
    assert packed["max_abs_error"] <= packed["error_bound"]
    assert len(result["rounds"]["paillier"]["rounds"]) == 2
    printed = capsys.readouterr().out
    assert "targets" in printed and "per-value phe" in printed
