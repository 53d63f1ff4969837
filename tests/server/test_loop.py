"""The server loop in-process: records, failures, the statistics phase (plain mode)."""

import json

import pytest

from fedids.artifacts import RunRecorder
from fedids.sim.inprocess import run_experiment
from tests.conftest import small_cfg


def test_plain_run_records_every_round(tmp_path):
    cfg = small_cfg(mode="plain", classification="multi", **{"num-server-rounds": 2})
    doc = run_experiment(cfg, tmp_path / "run")
    assert doc["status"] == "completed" and doc["setup_seconds"] > 0
    assert "quality_warning" in doc
    assert [r["round"] for r in doc["rounds"]] == [1, 2]
    r = doc["rounds"][-1]
    assert r["n_records"] == sum(sum(row) for row in r["confusion_matrix"]) > 0
    assert 0 < r["baseline_macro_f1"] < r["macro_f1"]
    assert set(r["per_class"]) == {"normal", "DoS", "Reconn", "CommInj", "Backdoor"}
    assert r["upload_bytes_per_client"] > 4 * 4900  # float32 weights + headers + metrics
    assert r["fit_clients"] == 2 and r["device_errors"] == []
    assert (tmp_path / "run" / "global_parameters.npz").is_file()
    assert (tmp_path / "run" / "model.pt").is_file()


def _failing(device_cid, method, from_round):
    def wrap(proxy, name, ins, call):
        if (
            proxy.cid == device_cid
            and name == method
            and ins.config.get("server_round", 0) >= (from_round)
        ):
            raise RuntimeError("disk full on the gateway")
        return call(ins)

    return wrap


def test_a_failing_device_is_named_and_the_round_goes_on(tmp_path):
    cfg = small_cfg(mode="plain", **{"num-server-rounds": 2})
    cfg["federation"]["min_fit_clients"] = 1
    cfg["federation"]["min_evaluate_clients"] = 1
    doc = run_experiment(cfg, tmp_path / "run", wrap=_failing("1001", "fit", 2))
    assert doc["status"] == "completed"
    r2 = doc["rounds"][1]
    assert r2["fit_clients"] == 1 and r2["fit_failures"] == 1
    [line] = r2["device_errors"]
    assert line.startswith("device 1001: ") and "disk full on the gateway" in line


def test_too_few_updates_fail_the_run_with_one_line(tmp_path):
    cfg = small_cfg(mode="plain", **{"num-server-rounds": 2})
    with pytest.raises(RuntimeError, match="at least 2 needed"):
        run_experiment(cfg, tmp_path / "run", wrap=_failing("1001", "fit", 2))
    doc = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert doc["status"] == "failed" and "at least 2 needed" in doc["error"]
    assert "device 1001: " in doc["error"] and "disk full on the gateway" in doc["error"]
    assert [r["round"] for r in doc["rounds"]] == [1]  # the completed round is kept


def test_devices_with_different_columns_stop_the_run(tmp_path):
    """Each device reads its own file; one has a text cell in a numeric column, so it reads
    that column as a category: the server names the column and both readings."""
    from fedids.config import compose_config, to_plain

    rows = [f"{i},{i * 2},{'dos' if i % 3 == 0 else 'normal'}" for i in range(200)]
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    good.write_text("\n".join(["a,b,label", *rows]) + "\n")
    rows[50] = "50,x,normal"
    bad.write_text("\n".join(["a,b,label", *rows]) + "\n")
    cfg = to_plain(
        compose_config(
            {
                "mode": "plain",
                "hydra-overrides": f"dataset=csv dataset.path={good} dataset.label_column=label "
                "dataset.classes=[normal,dos]",
            }
        )
    )
    with pytest.raises(RuntimeError, match="disagree on the input columns") as err:
        run_experiment(
            cfg, tmp_path / "run", node_configs=[{"data-path": str(good)}, {"data-path": str(bad)}]
        )
    assert "b=categorical" in str(err.value) and "b=numeric" in str(err.value)
    assert "numeric_columns" in str(err.value)


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


def test_recorder_keeps_completed_rounds_and_says_why_it_failed(tmp_path):
    rec = RunRecorder(tmp_path, {"a": 1}, {"mode": "plain"})
    rec.add_round({"round": 1, "x": 1})
    doc = json.loads((tmp_path / "metrics.json").read_text())
    assert doc["status"] == "running" and doc["rounds"] == [{"round": 1, "x": 1}]
    rec.fail("device 3: disk full")
    doc = json.loads((tmp_path / "metrics.json").read_text())
    assert doc["status"] == "failed" and doc["error"] == "device 3: disk full"
    assert (tmp_path / "config.yaml").read_text().strip() == "a: 1"


def test_majority_baseline_and_quality_warning():
    import numpy as np

    from fedids.server.records import majority_baseline_macro_f1, quality_warning

    cm = np.array([[90, 0], [10, 0]])
    assert majority_baseline_macro_f1(cm) == pytest.approx((2 * 0.9 / 1.9) / 2)
    assert "learned nothing" in quality_warning([{"macro_f1": 0.50, "baseline_macro_f1": 0.47}])
    assert quality_warning([{"macro_f1": 0.9, "baseline_macro_f1": 0.47}]) is None


def test_client_manager_wait_is_bounded():
    from fedids.server_app import BoundedClientManager

    with pytest.raises(RuntimeError, match="min_available_clients=3"):
        BoundedClientManager(timeout=1).wait_for(3)


def test_a_simulation_smaller_than_the_minimum_fails_at_once(tmp_path):
    cfg = small_cfg(mode="plain")
    cfg["federation"]["min_available_clients"] = 3
    from fedids.preflight import PreflightError

    with pytest.raises(
        PreflightError, match="min_available_clients=3 but the federation has only 2"
    ):
        run_experiment(cfg, tmp_path / "run")
    doc = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert doc["status"] == "failed" and "min_available_clients=3" in doc["error"]
