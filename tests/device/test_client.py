"""A device through the protocol's phases (plain mode; Paillier in tests/device/test_paillier*)."""

import threading

import numpy as np
import pytest

from fedids import protocol
from fedids.device import client as client_mod
from fedids.protocol import ProtocolError
from tests.conftest import small_cfg


def _stats_round(devices, run_id=77):
    """Every statistics pass on every device; returns the summed plain totals payloads."""
    from fedids.device.data import stats_passes

    totals = []
    for p in range(stats_passes(devices[0].cfg)):
        payloads = []
        for d in devices:
            arrays, n, metrics = d.client().fit(totals, {"phase": "stats", "stats_pass": p})
            assert n == 1 and "spec_digest" in metrics
            payloads.append(arrays)
        totals += protocol.sum_plain_counts(payloads, kind=2, tag=p, run_id=run_id, round=0)
    return totals


def _fedavg(updates):
    total = sum(n for _, n in updates)
    return [
        np.sum([a[i] * (n / total) for a, n in updates], axis=0).astype(np.float32)
        for i in range(len(updates[0][0]))
    ]


def test_plain_device_through_every_phase(device, tmp_path):
    cfg = small_cfg(mode="plain", classification="multi")
    devices = [device(cfg, 0), device(cfg, 1)]
    totals = _stats_round(devices)
    n_total = int(totals[1][0])
    assert n_total == sum(len(d.client().table.train) for d in devices)

    updates = []
    for d in devices:
        arrays, n, metrics = d.client().fit(totals, {"phase": "train", "server_round": 1})
        assert n == len(d.client().table.train) and metrics["train_seconds"] > 0
        updates.append((arrays, n))
    # the same initial model on both devices, built from the run's seed
    assert [a.shape for a in updates[0][0]] == [a.shape for a in updates[1][0]]
    glob = _fedavg(updates)

    evals = []
    for d in devices:
        loss, n_val, metrics = d.client().evaluate(
            glob, {"phase": "evaluate", "server_round": 1, "final": True, "run_path": str(tmp_path)}
        )
        vec = protocol.read_plain_counts(
            protocol.bytes_to_arrays(metrics["eval"]), kind=3, tag=1, run_id=77, round=1
        )
        totals_d = protocol.read_eval_vector(vec, 5)
        assert totals_d.records == n_val > 0 and loss > 0
        evals.append(totals_d)
    assert (tmp_path / "model.pt").is_file()
    assert (tmp_path / "devices" / "partition-1" / "model.pt").is_file()

    # round 2 starts from the accepted global model (no second decode needed)
    arrays, _, _ = devices[0].client().fit(glob, {"phase": "train", "server_round": 2})
    assert len(arrays) == len(glob)


def test_device_refuses_a_global_model_that_moved_too_far(device):
    cfg = small_cfg(mode="plain")
    devices = [device(cfg, 0), device(cfg, 1)]
    totals = _stats_round(devices)
    arrays, n, _ = devices[0].client().fit(totals, {"phase": "train", "server_round": 1})
    tampered = [a.copy() for a in arrays]
    tampered[0][0, 0] += 1000.0
    with pytest.raises(ProtocolError, match="moved by"):
        devices[0].client().evaluate(tampered, {"phase": "evaluate", "server_round": 1})


def test_device_refuses_rounds_going_backwards_and_late_joining(device):
    cfg = small_cfg(mode="plain")
    devices = [device(cfg, 0), device(cfg, 1)]
    totals = _stats_round(devices)
    arrays, _, _ = devices[0].client().fit(totals, {"phase": "train", "server_round": 1})
    devices[0].client().evaluate(arrays, {"phase": "evaluate", "server_round": 1})
    moved = [a + 0.001 for a in arrays]
    devices[0].client().evaluate(moved, {"phase": "evaluate", "server_round": 3})
    with pytest.raises(ProtocolError, match="after round 3"):
        devices[0].client().evaluate(
            [a + 0.002 for a in arrays], {"phase": "evaluate", "server_round": 2}
        )
    late = device(cfg, 1)
    with pytest.raises(ProtocolError, match="missed the statistics phase"):
        late.client().fit(arrays, {"phase": "train", "server_round": 2})


def test_statistics_of_another_run_are_refused(device):
    cfg = small_cfg(mode="plain")
    d = device(cfg, 0)
    other = _stats_round([device(cfg, 0, run_id=999), device(cfg, 1, run_id=999)], run_id=999)
    with pytest.raises(ProtocolError, match="run 999"):
        d.client().fit(other, {"phase": "train", "server_round": 1})


def test_plain_run_refused_by_a_device_holding_a_key(device):
    from fedids.device.policy import PolicyError

    cfg = small_cfg(mode="plain")
    with pytest.raises(PolicyError, match="allow-plain=true"):
        device(cfg, 0, **{"key-dir": "/etc/fedids/keys"}).client(simulation=False)


# -- evaluation overlaps the decryption with encoding: results and errors intact --------------


@pytest.mark.parametrize("overlap", [False, True])
def test_beside_returns_both_results_in_order(overlap):
    threads = []

    def other():
        threads.append(threading.current_thread().name)
        return "encoded"

    assert client_mod._beside(lambda: "weights", other, overlap) == ("weights", "encoded")
    assert threads[0].startswith("fedids-encode") == overlap


def test_beside_raises_the_decryption_error_first():
    def refuse():
        raise ValueError("device 0 refuses the global model")

    with pytest.raises(ValueError, match="refuses"):
        client_mod._beside(refuse, lambda: 1 / 0, True)


def test_beside_raises_an_encoding_error():
    def bad():
        raise KeyError("column")

    with pytest.raises(KeyError, match="column"):
        client_mod._beside(lambda: [1], bad, True)
