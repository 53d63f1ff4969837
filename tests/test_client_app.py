"""The NumPyClient: fit/evaluate round trip in plain and Paillier mode, node-config."""

import json

import numpy as np
import pytest
from flwr.common import Context, RecordDict

from fedids.client_app import FedIDSClient, client_from_context
from fedids.crypto.update import is_encrypted_payload
from tests.conftest import small_cfg


def test_fit_evaluate_round_trip_plain():
    cfg = small_cfg(mode="plain", classification="multi")
    client = FedIDSClient(cfg, 0, 2)
    init = client.get_parameters({})
    arrays, n, metrics = client.fit(init, {"server_round": 1})
    assert n == len(client.data.x_train) > 0
    assert [a.shape for a in arrays] == [a.shape for a in init]
    assert any(not np.array_equal(a, b) for a, b in zip(arrays, init, strict=True))
    assert metrics["train_seconds"] > 0 and metrics["partition_id"] == 0
    loss, n_val, m = client.evaluate(arrays, {})
    assert n_val == len(client.data.x_val) > 0
    cm = np.array(json.loads(m["confusion"]))
    assert cm.shape == (5, 5) and cm.sum() == n_val
    assert json.loads(m["class_names"]) == ["normal", "DoS", "Reconn", "CommInj", "Backdoor"]
    assert loss > 0


def test_fit_paillier_sends_only_ciphertexts(tmp_path):
    cfg = small_cfg(mode="paillier", classification="binary")
    client = FedIDSClient(cfg, 1, 2)
    arrays, _, metrics = client.fit(client.get_parameters({}), {"run_path": str(tmp_path)})
    assert is_encrypted_payload(arrays)
    assert all(a.dtype in (np.uint8, np.int64) for a in arrays)
    assert metrics["encrypt_seconds"] > 0
    assert len(metrics["fingerprint"]) == 64
    assert int(metrics["pubkey_n"], 16).bit_length() == 2048
    assert (tmp_path / "keys" / "private.json").stat().st_mode & 0o777 == 0o600


def test_final_evaluate_writes_model(tmp_path):
    from fedids.model import load_detector

    cfg = small_cfg(mode="plain", classification="binary")
    client = FedIDSClient(cfg, 0, 2)
    client.evaluate(client.get_parameters({}), {"final": True, "run_path": str(tmp_path)})
    det = load_detector(tmp_path / "model.pt")
    assert det.class_names == ["normal", "attack"]
    assert det.meta["synthetic"] is True
    assert (tmp_path / "devices" / "partition-0" / "model.pt").is_file()


def _context(node_config, run_config):
    return Context(
        run_id=1, node_id=1, node_config=node_config, state=RecordDict(), run_config=run_config
    )


def test_client_reads_node_config():
    client = client_from_context(
        _context({"partition-id": 1, "num-partitions": 3}, {"hydra-overrides": "dataset.rows=6000"})
    )
    assert (client.partition_id, client.num_partitions) == (1, 3)


def test_missing_node_config_is_explained():
    with pytest.raises(ValueError, match="partition-id"):
        client_from_context(_context({}, {}))


def test_node_config_selects_eaas_for_this_device():
    client = client_from_context(
        _context(
            {
                "partition-id": 0,
                "num-partitions": 2,
                "eaas-url": "https://eaas.site:8443",
                "eaas-token-file": "/etc/fedids/token",
                "eaas-fallback-local": "true",
            },
            {"mode": "paillier", "hydra-overrides": "dataset.rows=6000"},
        )
    )
    assert client.cfg["mode"]["eaas_url"] == "https://eaas.site:8443"
    assert client.cfg["mode"]["eaas_token_file"] == "/etc/fedids/token"
    assert client.cfg["mode"]["eaas_fallback_local"] is True
