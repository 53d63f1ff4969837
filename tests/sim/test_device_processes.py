"""Devices in processes of their own: a run completes and every process is gone afterwards."""

import pytest

from fedids.sim.device_processes import (
    DeviceProcessError,
    ProcessFederation,
    run_with_device_processes,
)
from tests.conftest import small_cfg


def test_buffered_run_with_device_processes(tmp_path):
    cfg = small_cfg(
        mode="plain",
        aggregation="buffered",
        classification="binary",
        **{"num-server-rounds": 2, "hydra-overrides": "dataset.rows=4000 model.hidden=[8]"},
    )
    doc = run_with_device_processes(cfg, tmp_path / "run", num_devices=2)
    assert doc["status"] == "completed" and doc["runner"].startswith("device processes")
    assert [r["evaluate_clients"] for r in doc["rounds"]] == [2, 2]


def test_a_device_error_comes_back_as_one_line_and_processes_stop():
    cfg = small_cfg(mode="plain")
    with ProcessFederation(cfg, 2) as fed:
        from flwr.common import FitIns, Parameters

        ins = FitIns(Parameters(tensors=[], tensor_type=""), {"phase": "nonsense"})
        with pytest.raises(DeviceProcessError, match="'phase'='nonsense' is not one of"):
            fed.proxies[0].fit(ins, None, None)
        processes = [p.process for p in fed.proxies]
    assert all(not p.is_alive() for p in processes)
