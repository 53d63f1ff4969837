"""The server side: strategies built from config, per-round records, Paillier == plain."""

import json

import numpy as np
import pytest

from fedids.artifacts import RunRecorder
from fedids.client_app import FedIDSClient
from fedids.crypto.codec import CodecParams, error_bound
from fedids.inprocess import run_experiment, run_rounds
from fedids.server_app import build_strategy
from tests.conftest import small_cfg


def _clients(cfg):
    return [FedIDSClient(cfg, i, 2) for i in range(2)]


def test_plain_run_records_every_round(tmp_path):
    cfg = small_cfg(mode="plain", classification="multi", **{"num-server-rounds": 2})
    doc = run_experiment(cfg, tmp_path / "run")
    assert doc["status"] == "completed"
    assert [r["round"] for r in doc["rounds"]] == [1, 2]
    r = doc["rounds"][-1]
    assert r["n_records"] == sum(sum(row) for row in r["confusion_matrix"]) > 0
    assert set(r["per_class"]) == {"normal", "DoS", "Reconn", "CommInj", "Backdoor"}
    # float32 weights of the default MLP: 4 bytes each plus .npy headers and metrics
    assert r["upload_bytes_per_client"] > 4 * 4900
    assert (tmp_path / "run" / "global_parameters.npz").is_file()
    assert (tmp_path / "run" / "model.pt").is_file()


def test_paillier_global_model_equals_plain_within_bound(tmp_path):
    """Same seed, same rounds: every parameter within the codec's documented bound."""
    finals = {}
    for mode in ("plain", "paillier"):
        cfg = small_cfg(mode=mode, classification="binary", **{"num-server-rounds": 1})
        rec = RunRecorder(tmp_path / mode, cfg, {})
        clients = _clients(cfg)
        params = run_rounds(build_strategy(cfg, rec), clients, 1, tmp_path / mode)
        if mode == "paillier":
            shapes = [w.shape for w in clients[0].get_parameters({})]
            params = (
                clients[0]
                ._secure_channel({"run_path": str(tmp_path / mode)})
                .decrypt(params, shapes)
            )
        finals[mode] = np.concatenate([p.ravel() for p in params])
        n_examples = [len(c.data.x_train) for c in clients]
    codec = CodecParams.from_config(small_cfg(mode="paillier")["mode"])
    assert np.abs(finals["plain"]).max() < codec.clip  # nothing clipped: the bound applies
    bound = error_bound(codec, n_examples)
    diff = np.abs(finals["plain"] - finals["paillier"])
    assert diff.max() <= bound + 1e-6, (diff.max(), bound)
    assert diff.max() > 0  # it really went through quantization


def test_summary_table_lists_rounds(tmp_path):
    rec = RunRecorder(tmp_path, {}, {})
    per_class = {"normal": {"recall": 0.99}, "attack": {"recall": 0.5}}
    rec.add_round(
        {
            "round": 1,
            "accuracy": 0.9,
            "macro_f1": 0.8,
            "false_positive_rate": 0.01,
            "per_class": per_class,
            "round_seconds": 1.5,
            "upload_bytes_per_client": 2048,
        }
    )
    table = rec.summary_table().splitlines()
    assert "macroF1" in table[0] and "R:attack" in table[0]
    assert table[1].split()[:3] == ["1", "0.9000", "0.8000"]


def test_recorder_keeps_completed_rounds(tmp_path):
    rec = RunRecorder(tmp_path, {"a": 1}, {"mode": "plain"})
    rec.add_round({"round": 1, "x": 1})
    doc = json.loads((tmp_path / "metrics.json").read_text())
    assert doc["status"] == "running" and doc["rounds"] == [{"round": 1, "x": 1}]
    assert (tmp_path / "config.yaml").read_text().strip() == "a: 1"


@pytest.mark.parametrize("mode", ["plain", "paillier"])
def test_strategy_carries_federation_settings(mode, tmp_path):
    cfg = small_cfg(mode=mode)
    cfg["federation"]["min_fit_clients"] = 3
    strategy = build_strategy(cfg, RunRecorder(tmp_path, cfg, {}))
    assert strategy.min_fit_clients == 3
    assert strategy.num_rounds == cfg["num_server_rounds"]


def test_too_few_updates_stop_the_run_clearly(tmp_path):
    from fedids.inprocess import LocalProxy, fit_res

    cfg = small_cfg(mode="plain")
    rec = RunRecorder(tmp_path, cfg, {})
    strategy = build_strategy(cfg, rec)  # min_fit_clients = 2
    client = FedIDSClient(cfg, 0, 2)
    res = fit_res(client, client.get_parameters({}), {"server_round": 1})
    with pytest.raises(RuntimeError, match="min_fit_clients=2"):
        strategy.aggregate_fit(1, [(LocalProxy(cid="1"), res)], [RuntimeError("device lost")])
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "failed"


def test_client_manager_wait_is_bounded():
    from fedids.server_app import BoundedClientManager

    with pytest.raises(RuntimeError, match="min_available_clients=3"):
        BoundedClientManager(timeout=1).wait_for(3)
