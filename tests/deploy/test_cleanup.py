"""Nothing is left running after ``flwr stop`` or Ctrl-C in a deployment (issue 10).

Processes are listed by an environment tag every process inherits (Flower's helpers run in
sessions of their own, so parentage alone would miss them), before and after.
"""

from __future__ import annotations

import secrets
import signal
import sys
import time
from pathlib import Path

import pytest
from deploy_helpers import REPO, run_config, wait_for

from fedids.deploy.flower import wait_for_log
from fedids.deploy.flwr_cli import run_status
from fedids.deploy.harness import Federation
from fedids.deploy.proctrack import group_members, label

pytestmark = pytest.mark.e2e
TEST_TAG = "FEDIDS_TEST_TAG"


def labels(procs: list[tuple[int, str]]) -> list[str]:
    return sorted(label(pid) for pid, _ in procs)


def test_flwr_stop_ends_the_run_on_every_machine(
    deployment: Federation, device_fingerprint: str, tmp_path: Path
) -> None:
    hydra = f"mode.expected_fingerprint={device_fingerprint}"
    rc = run_config(tmp_path, "stopped", rounds=50, mode="'paillier'", hydra=hydra)
    run = deployment.start_run(REPO, rc)
    assert wait_for_log(run, "[ROUND 1]", 180), run.log()
    wait_for(lambda: "flwr-clientapp" in labels(deployment.run_processes()), 90, "a device at work")
    during = labels(deployment.run_processes())
    assert "flwr-serverapp" in during and "flwr" in during, during
    started = time.monotonic()
    survivors = deployment.stop_run(run, device_timeout=120)
    took = time.monotonic() - started
    # the SuperLink side is ended at once; each device's flwr-clientapp finishes its message
    # (Flower 1.42; killing it would wedge the SuperNode) and exits by itself
    assert survivors == [] and deployment.run_processes() == [], labels(survivors)
    assert took < 120
    run_id = run.log(tail=None).split("Successfully started run ")[1].split()[0]
    assert run_status(deployment.env, deployment.workdir, run_id)["status"] == "finished:stopped"
    dead = [node.name for node in deployment.nodes if not node.alive()]
    assert not dead, "\n".join(f"{n.name}: {n.log(3000)}" for n in deployment.nodes)


def test_ctrl_c_on_the_local_federation_script_leaves_nothing(spawn, tmp_path: Path) -> None:
    """SIGINT to ``scripts/deploy/local_federation.py --run`` in the middle of a round."""
    tag = secrets.token_hex(8)
    workdir = tmp_path / "fed"
    rc = run_config(tmp_path / "runs", "interrupted", rounds=50, mode="'paillier'")
    script = str(REPO / "scripts" / "deploy" / "local_federation.py")
    driver = spawn(
        [sys.executable, script, "--devices", "2", "--workdir", str(workdir), "--run", rc],
        env={TEST_TAG: tag},
    )
    run_log = workdir / "flwr-run-1.log"
    wait_for(lambda: run_log.is_file() and "[ROUND 1]" in run_log.read_text(), 300, "round 1")
    wait_for(
        lambda: "flwr-clientapp" in labels(group_members(tag, TEST_TAG)), 90, "a device at work"
    )
    before = labels(group_members(tag, TEST_TAG))
    for name in ("flower-superlink", "flower-supernode", "flower-superexec", "flwr-serverapp"):
        assert name in before, before
    driver.send_signal(signal.SIGINT)
    assert driver.wait(60) == 130
    wait_for(lambda: not group_members(tag, TEST_TAG), 5, "every process of the federation gone")
