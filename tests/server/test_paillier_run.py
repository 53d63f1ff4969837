"""Paillier runs in-process: same figures as plain, nothing readable reaches the server,
and devices refuse what would expose one site (real 2048-bit keys, small model)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from flwr.common import parameters_to_ndarrays

from fedids.crypto.keys import load_private_key
from fedids.crypto.wire import is_encrypted_payload
from fedids.protocol import bytes_to_arrays
from fedids.sim.inprocess import run_experiment
from tests.conftest import small_cfg

SMALL_MODEL = "model.hidden=[16] encoding.bins=8 encoding.frequencies=2"


def _cfg(mode, rounds=2, classification="binary"):
    return small_cfg(
        mode=mode,
        classification=classification,
        **{"num-server-rounds": rounds, "hydra-overrides": f"dataset.rows=6000 {SMALL_MODEL}"},
    )


@pytest.fixture(scope="module")
def paillier_run(tmp_path_factory):
    """One Paillier run; every reply the server received is kept."""
    seen = []

    def wrap(proxy, method, ins, call):
        res = call(ins)
        seen.append((proxy.cid, method, ins.config.get("phase"), res))
        return res

    run_path = tmp_path_factory.mktemp("paillier") / "run"
    doc = run_experiment(_cfg("paillier"), run_path, wrap=wrap)
    return doc, seen, run_path


def test_paillier_run_matches_plain(paillier_run, tmp_path):
    doc, _, _ = paillier_run
    plain = run_experiment(_cfg("plain"), tmp_path / "plain")
    assert doc["status"] == plain["status"] == "completed"
    for p, q in zip(plain["rounds"], doc["rounds"], strict=True):
        assert abs(p["macro_f1"] - q["macro_f1"]) <= 0.005, (p["macro_f1"], q["macro_f1"])
        assert q["n_records"] == p["n_records"] and q["baseline_macro_f1"] > 0
    assert doc["rounds"][-1]["macro_f1"] > doc["rounds"][-1]["baseline_macro_f1"]


ALLOWED_METRICS = {
    "pubkey_n", "fingerprint", "spec_digest", "spec_kinds", "eval", "class_names",
    "decrypt_seconds", "train_seconds", "encrypt_seconds", "report_round", "report",
}  # fmt: skip


def test_server_receives_no_plaintext_weights_no_device_counts_no_key(paillier_run):
    """Issue 9: intercept every message the server receives in a Paillier run."""
    _, seen, run_path = paillier_run
    key = load_private_key(run_path / "keys")
    secrets = [format(key.p, "x"), format(key.q, "x"), str(key.p), str(key.q)]
    assert len(seen) >= 2 * (2 + 2 * 2 + 1)  # stats x2, (fit + evaluate) x2, final report
    for _cid, method, phase, res in seen:
        metrics = dict(res.metrics or {})
        assert set(metrics) <= ALLOWED_METRICS, (method, phase, set(metrics) - ALLOWED_METRICS)
        assert "partition_id" not in metrics and "confusion" not in metrics
        if method == "fit":
            arrays = parameters_to_ndarrays(res.parameters)
            assert is_encrypted_payload(arrays), (phase, [a.dtype for a in arrays])
            assert res.num_examples == 1  # no per-device record count in the clear
        else:
            assert res.loss == 0.0 and res.num_examples == 1
            if phase == "evaluate":
                assert is_encrypted_payload(bytes_to_arrays(metrics["eval"]))
        blob = json.dumps({k: v.hex() if isinstance(v, bytes) else v for k, v in metrics.items()})
        blob += "".join(t.hex() for t in res.parameters.tensors) if method == "fit" else ""
        for secret in secrets:
            assert secret not in blob
        # reports carry only federation-wide totals (the same from every device)
        if "report" in metrics:
            assert re.search(r'"records": \d+', metrics["report"])
    reports = {m.metrics["report"] for _, _, _, m in seen if "report" in (m.metrics or {})}
    assert len(reports) == 2  # one per round, identical across devices


def _drop_device_from_round(cid, from_round):
    def wrap(proxy, method, ins, call):
        if proxy.cid == cid and ins.config.get("server_round", 0) >= from_round:
            raise RuntimeError("device offline")
        return call(ins)

    return wrap


def test_devices_refuse_an_aggregate_of_one_contributor(tmp_path):
    cfg = _cfg("paillier")
    for key in ("min_fit_clients", "min_evaluate_clients"):
        cfg["federation"][key] = 1
    with pytest.raises(RuntimeError, match="min-contributors"):
        run_experiment(cfg, tmp_path / "refused", wrap=_drop_device_from_round("1001", 2))
    doc = json.loads((tmp_path / "refused" / "metrics.json").read_text())
    assert doc["status"] == "failed" and "min-contributors" in doc["error"]
    # a site that allows it in its own node-config decrypts it
    ok = run_experiment(
        cfg,
        tmp_path / "allowed",
        wrap=_drop_device_from_round("1001", 2),
        node_configs=[{"min-contributors": 1}, {"min-contributors": 1}],
    )
    assert ok["status"] == "completed" and ok["rounds"][1]["fit_clients"] == 1
    assert np.isfinite(ok["rounds"][1]["macro_f1"])
