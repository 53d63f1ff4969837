"""Buffered runs in-process (plain mode): records, the staleness bound, failures, the config.

No timing thresholds: the time trigger is switched off (``time_factor`` huge) where a test
needs a definite order, and a slow device is simulated by holding its call until an event.
"""

import json
import threading
import time

import pytest

from fedids.config import ConfigError
from fedids.server.buffered import BufferedFedIDSServer
from fedids.server_app import make_server
from fedids.sim.inprocess import INPROCESS_RUN_ID, local_federation, run_experiment
from tests.conftest import small_cfg

SMALL_MODEL = "model.hidden=[16] encoding.bins=8 encoding.frequencies=2"


def buffered_cfg(rounds, devices, mode="plain", **agg):
    cfg = small_cfg(
        mode=mode,
        aggregation="buffered",
        classification="binary",
        **{"num-server-rounds": rounds, "hydra-overrides": f"dataset.rows=6000 {SMALL_MODEL}"},
    )
    cfg["federation"]["num_partitions"] = devices
    cfg["aggregation"].update(agg)
    if mode == "paillier":
        cfg["mode"]["max_multiplier"] = cfg["aggregation"]["max_multiplier"]
    return cfg


def check_records(doc, rounds, devices, max_staleness=1):
    """What every buffered metrics.json must hold."""
    assert doc["status"] == "completed", doc.get("error")
    assert doc["aggregation"]["name"] == "buffered"
    assert [r["round"] for r in doc["rounds"]] == list(range(1, rounds + 1))
    elapsed = [r["elapsed_seconds"] for r in doc["rounds"]]
    assert elapsed == sorted(elapsed) and elapsed[0] > 0
    for r in doc["rounds"]:
        # quality over every device's validation split, like a synchronous round
        assert r["evaluate_clients"] == devices and r["evaluate_failures"] == 0
        assert r["n_records"] == sum(map(sum, r["confusion_matrix"])) > 0
        devs = [c["device"] for c in r["contributors"]]
        assert len(devs) == len(set(devs)) == r["fit_clients"]  # one update per device
        for c in r["contributors"]:
            assert 0 <= c["staleness"] <= max_staleness
            assert c["base_version"] == r["round"] - 1 - c["staleness"]
            assert 1 <= c["multiplier"] <= 4
        assert r["trigger"] in {"buffer_full", "time_threshold", "all_arrived", "final"}
        assert {"macro_f1", "baseline_macro_f1", "round_seconds", "upload_bytes_per_client"} <= set(
            r
        )
    assert doc["rounds"][-1]["trigger"] == "final"


def test_in_process_buffered_run_records_every_version(tmp_path):
    cfg = buffered_cfg(4, 3)
    doc = run_experiment(cfg, tmp_path / "run", num_devices=3)
    check_records(doc, 4, 3)
    last = doc["rounds"][-1]
    assert last["macro_f1"] > last["baseline_macro_f1"]
    assert (tmp_path / "run" / "global_parameters.npz").is_file()
    assert (tmp_path / "run" / "model.pt").is_file()
    assert all("partition_id" in c for c in last["contributors"])  # plain mode says


def _concurrent_run(cfg, run_path, devices, wrap):
    manager, _ = local_federation(cfg, devices, wrap=wrap)
    server = make_server(cfg, INPROCESS_RUN_ID, run_path, simulation=True, client_manager=manager)
    assert isinstance(server, BufferedFedIDSServer)
    server.fit(int(cfg["num_server_rounds"]), timeout=None)
    return json.loads((run_path / "metrics.json").read_text())


@pytest.mark.parametrize("mode", ["plain", "paillier"])
def test_a_slow_device_is_waited_for_instead_of_being_left_behind(tmp_path, mode):
    """Device 1003 holds its first update until the three others have trained twice: the
    server makes version 1 from the three (K=3), then waits for 1003 rather than make
    version 2 without it (it could only join version 3, two versions stale). Its update,
    made for version 1, is re-based on version 1 by the device and sent for version 2."""
    release = threading.Event()
    second_fits = []
    lock = threading.Lock()
    one_at_a_time = threading.Lock()  # device code shares torch's global RNG: never overlap it

    def wrap(proxy, name, ins, call):
        if name == "fit" and proxy.cid == "1003" and ins.config["server_round"] == 1:
            assert release.wait(120), "the fast devices never trained on version 1"
        with one_at_a_time:
            out = call(ins)
        if name == "fit" and ins.config["server_round"] == 2:
            with lock:
                second_fits.append(proxy.cid)
                if len(second_fits) == 3:
                    release.set()
        return out

    cfg = buffered_cfg(3, 4, mode, buffer_size=3, time_factor=1000.0)
    doc = _concurrent_run(cfg, tmp_path / "run", 4, wrap)
    check_records(doc, 3, 4)
    v1, v2, v3 = doc["rounds"]
    assert v1["trigger"] == "buffer_full"
    assert sorted(c["device"] for c in v1["contributors"]) == ["1000", "1001", "1002"]
    by_device = {c["device"]: c for c in v2["contributors"]}
    assert sorted(by_device) == ["1000", "1001", "1002", "1003"]
    assert (by_device["1003"]["staleness"], by_device["1003"]["multiplier"]) == (1, 3)
    assert all(by_device[d]["staleness"] == 0 for d in ("1000", "1001", "1002"))
    assert by_device["1003"]["rebound"]  # re-based on version 1 by the device
    assert v3["fit_clients"] == 4  # the last version waits for every update on its way
    assert v3["macro_f1"] > v3["baseline_macro_f1"]
    if mode == "paillier":  # no device tells the server its partition or record count
        assert all("partition_id" not in c for r in doc["rounds"] for c in r["contributors"])


def test_fast_devices_train_more_epochs_instead_of_waiting_for_a_slow_one(tmp_path):
    """Device 1003 takes 2.5 s more than the others for every fit. Once its time is known,
    a fast device whose next update must wait for 1003 anyway is asked for more epochs (up to
    idle_epochs_factor x local_epochs); 1003 itself, and anyone with nothing to wait for,
    gets local_epochs."""
    one_at_a_time = threading.Lock()

    def wrap(proxy, name, ins, call):
        with one_at_a_time:
            out = call(ins)
        if name == "fit" and proxy.cid == "1003":
            time.sleep(2.5)
        return out

    cfg = buffered_cfg(6, 4, buffer_size=3, time_factor=1000.0, idle_epochs_factor=2)
    base = int(cfg["local_epochs"])
    doc = _concurrent_run(cfg, tmp_path / "run", 4, wrap)
    check_records(doc, 6, 4)
    assert doc["aggregation"]["idle_epochs_factor"] == 2
    entries = [c for r in doc["rounds"] for c in r["contributors"]]
    assert all(base <= c["local_epochs"] <= 2 * base for c in entries)
    assert all(c["local_epochs"] == base for c in entries if c["device"] == "1003")
    assert all(c["local_epochs"] == base for c in doc["rounds"][0]["contributors"])
    filled = [c for c in entries if c["local_epochs"] > base]
    assert filled and all(c["device"] != "1003" for c in filled)


def test_a_device_failing_every_fit_stops_the_run_with_one_line(tmp_path):
    def wrap(proxy, name, ins, call):
        if proxy.cid == "1001" and name == "fit" and ins.config["server_round"] >= 2:
            raise RuntimeError("disk full on the gateway")
        return call(ins)

    cfg = buffered_cfg(3, 2)
    with pytest.raises(RuntimeError, match="at least 2 needed"):
        run_experiment(cfg, tmp_path / "run", num_devices=2, wrap=wrap)
    doc = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert doc["status"] == "failed"
    assert "device 1001: " in doc["error"] and "disk full on the gateway" in doc["error"]
    assert [r["round"] for r in doc["rounds"]] == [1]  # the completed version is kept


def test_run_config_key_selects_the_aggregation():
    assert small_cfg(aggregation="buffered")["aggregation"]["name"] == "buffered"
    assert small_cfg()["aggregation"]["name"] == "sync"
    with pytest.raises(ConfigError, match="aggregation must be one of buffered, sync"):
        small_cfg(aggregation="async")
