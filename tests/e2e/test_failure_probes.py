"""Failure probes through real `flwr run --stream`: one line, no traceback, status "failed".

Few on purpose (each run costs 10-30 s, mostly Ray start-up): one per path a failure can
take. Config and data errors in all their forms are covered below Flower
(tests/test_config.py, tests/test_preflight.py, tests/test_failures.py).

* a run-config error, before the run directory exists (server_fn's guard, fallback dir);
* a data error found by the ServerApp's preflight (a text cell in a feature column);
* a device-side failure (the federation is larger than the config's floor, so only the
  devices find that the file is too small): the device guard's one line, naming the device,
  reaches the server and ends the run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from fedids.simulation import simulation_link

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 300  # federation.round_timeout in the probes that reach a round


@pytest.fixture(scope="module")
def link():
    with simulation_link(num_supernodes=2, num_cpus=1) as link:
        yield link


def _probe(link, run_dir: Path, name: str, run_config: str, *, devices: int = 2) -> dict:
    """Run, then check the failure contract; returns metrics.json and the line."""
    link.num_supernodes = devices
    t0 = time.monotonic()
    try:
        result = link.run(
            ROOT, f"{run_config} run-dir='{run_dir}' run-name='{name}'", timeout=900, echo=False
        )
    finally:
        link.num_supernodes = 2
    elapsed = time.monotonic() - t0
    out = result.stdout
    assert "Traceback" not in out, out[-4000:]
    failed = [line for line in out.splitlines() if "fedids run failed: " in line]
    assert len(failed) == 1, out[-4000:]
    run = run_dir / name
    doc = json.loads((run / "metrics.json").read_text())
    assert doc["status"] == "failed"
    assert f"fedids run failed: {doc['error']} (traceback: {run / 'error.log'})" in failed[0]
    assert "Traceback" in (run / "error.log").read_text()
    assert elapsed < TIMEOUT, f"the run waited {elapsed:.0f} s: as if for a round timeout"
    return doc


def test_config_error_before_the_run_dir_exists(link, tmp_path):
    doc = _probe(link, tmp_path, "mode-foo", "mode='foo'")
    assert doc["error"] == "run-config mode must be one of paillier, plain, got 'foo'"


def test_text_column_found_before_round_1(link, tmp_path):
    csv = tmp_path / "flows.csv"
    rows = [f"{i},{i * 2},{'dos' if i % 3 == 0 else 'normal'}" for i in range(200)]
    rows[50] = "50,x,normal"
    csv.write_text("\n".join(["a,b,label", *rows]) + "\n")
    overrides = (
        f"dataset=csv dataset.path={csv} dataset.label_column=label "
        f"dataset.classes=[normal,dos] federation.round_timeout={TIMEOUT}"
    )
    doc = _probe(link, tmp_path, "text", f"num-server-rounds=1 hydra-overrides='{overrides}'")
    assert doc["error"].startswith(f"{csv}: column 'b' must be numeric")
    assert "line 52: 'x'" in doc["error"]
    assert doc["rounds"] == [] and doc["dataset"] == "csv"


def test_device_failure_names_the_device(link, tmp_path):
    csv = tmp_path / "two.csv"
    csv.write_text("a,b,label\n1,2,normal\n3,4,dos\n")
    overrides = (
        f"dataset=csv dataset.path={csv} dataset.label_column=label "
        f"dataset.classes=[normal,dos] federation.round_timeout={TIMEOUT}"
    )
    doc = _probe(
        link, tmp_path, "device", f"num-server-rounds=1 hydra-overrides='{overrides}'", devices=3
    )
    assert "device " in doc["error"] and "(partition-id " in doc["error"]
    assert "cannot give each of 3 partitions at least 1 record(s)" in doc["error"]


def test_deployed_device_failure_is_one_line_from_flwr_clientapp(tmp_path):
    """Deployment: the ServerApp runs in flwr-serverapp, each ClientApp in a fresh
    flwr-clientapp on its SuperNode. Device 1's own file (node-config data-path) has a text
    cell: the server cannot see that file, the device names itself, the file and the cell."""
    from fedids.deploy.processes import Federation

    good = tmp_path / "good.csv"
    rows = [f"{i},{i * 2},{'dos' if i % 3 == 0 else 'normal'}" for i in range(200)]
    good.write_text("\n".join(["a,b,label", *rows]) + "\n")
    bad = tmp_path / "bad.csv"
    rows[50] = "50,x,normal"
    bad.write_text("\n".join(["a,b,label", *rows]) + "\n")
    overrides = (
        f"dataset=csv dataset.path={good} dataset.label_column=label "
        f"dataset.classes=[normal,dos] federation.round_timeout={TIMEOUT}"
    )
    run_config = (
        f"num-server-rounds=1 hydra-overrides='{overrides}' "
        f"run-dir='{tmp_path / 'runs'}' run-name='deployed'"
    )
    with Federation(tmp_path / "fed", tls=False, node_auth=False) as fed:
        fed.add_node(0, 2, extra_config={"data-path": str(good)})
        fed.add_node(1, 2, extra_config={"data-path": str(bad)})
        fed.wait_online(2)
        result = fed.run(ROOT, run_config, timeout=TIMEOUT)
        assert not result.timed_out, result.output[-4000:]
        status = fed.status(result)
    out = result.output
    assert "Traceback" not in out, out[-4000:]
    run = tmp_path / "runs" / "deployed"
    doc = json.loads((run / "metrics.json").read_text())
    assert doc["status"] == "failed" and status["status"] == "finished:failed"
    # device 1's file has a text cell in column b: it reads b as a category, device 0 as a
    # number; the server names the column and both readings without seeing either file
    assert "devices disagree on the input columns" in doc["error"]
    assert "b=categorical" in doc["error"] and "b=numeric" in doc["error"]
    failed = [line for line in out.splitlines() if "fedids run failed: " in line]
    assert len(failed) == 1 and doc["error"] in failed[0], out[-4000:]
