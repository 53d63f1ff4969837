"""Simulation runs leave no Flower or Ray process behind, and too few devices fail at once.

Issue 10: after ``flwr stop``, ``flwr-simulation``, Ray's ``gcs_server``, ``raylet`` and actors
stayed alive for minutes (Flower 1.42 even computes a stopped simulation to its last round);
on SIGTERM Ray agents were orphaned; ``min_available_clients=3`` with 2 simulated devices
waited the whole round timeout in silence. Processes are listed by an environment tag every
process inherits, Ray's workers included, whatever their parent.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fedids.deploy.flower import flower_bin
from fedids.deploy.flwr_cli import run_id_in, run_status
from fedids.deploy.proctrack import GROUP_ENV, group_members, label, terminate
from fedids.simulation import CONNECTION, SimulationLink, simulation_link

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
SMALL = "dataset.rows=8000"
TEST_TAG = "FEDIDS_TEST_TAG"


def labels(procs: list[tuple[int, str]]) -> list[str]:
    return sorted(label(pid) for pid, _ in procs)


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def group_tags(pid: int) -> set[str]:
    """The values of ``GROUP_ENV`` that ``/proc/<pid>/environ`` shows ("" if none)."""
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return set()
    prefix = f"{GROUP_ENV}=".encode()
    return {v[len(prefix) :].decode() for v in env if v.startswith(prefix)} or {""}


def has_ray_workers(procs: list[tuple[int, str]]) -> bool:
    names = labels(procs)
    return "raylet" in names and any(n.startswith("ray::") for n in names)


@pytest.fixture(scope="module")
def link():
    with simulation_link(num_supernodes=2, num_cpus=1) as link:
        yield link


class BackgroundRun:
    """``link.run`` in a thread, so a test can act on the run while it goes."""

    def __init__(self, link: SimulationLink, run_config: str) -> None:
        self.link = link
        self.offset = link.log_path.stat().st_size if link.log_path.exists() else 0
        self.result: subprocess.CompletedProcess[str] | None = None
        self.thread = threading.Thread(target=self._go, args=(run_config,), daemon=True)
        self.thread.start()

    def _go(self, run_config: str) -> None:
        self.result = self.link.run(ROOT, run_config, timeout=600, echo=False)

    def output(self) -> str:
        if not self.link.log_path.exists():
            return ""
        return self.link.log_path.read_text(errors="replace")[self.offset :]

    def wait_until_training(self) -> str:
        """Wait for round 1 with Ray's workers up; returns the run id."""
        wait_for(lambda: "[ROUND 1]" in self.output(), 300, "round 1")
        wait_for(lambda: has_ray_workers(self.link.run_processes()), 60, "Ray workers")
        run_id = run_id_in(self.output())
        assert run_id is not None
        return run_id


def test_too_few_simulated_devices_fail_at_once_and_leave_nothing(link, tmp_path):
    """2 simulated devices, min_available_clients=3: one line, right away (round_timeout is
    600 s: a wait would hit this call's 240 s bound), and no process left."""
    hydra = f"{SMALL} federation.min_available_clients=3"
    result = link.run(
        ROOT,
        f"num-server-rounds=2 run-dir='{tmp_path}' run-name='few' hydra-overrides='{hydra}'",
        timeout=240,
        echo=False,
    )
    assert "federation.min_available_clients=3 but the federation has only 2 device(s)" in (
        result.stdout
    ), result.stdout[-3000:]
    assert link.run_processes() == []


def test_flwr_stop_ends_the_simulation_within_seconds(link, tmp_path):
    run = BackgroundRun(
        link, f"num-server-rounds=1000 run-dir='{tmp_path}' hydra-overrides='{SMALL}'"
    )
    run_id = run.wait_until_training()
    before = labels(link.run_processes())
    assert {"flwr-simulation", "gcs_server", "raylet"} <= set(before), before
    started = time.monotonic()
    # a user's `flwr stop` from another shell: not a member of the link's process group
    # (the link ends its group's run processes once the run is over, and this CLI may
    # still be exiting then)
    user_env = {k: v for k, v in link.env.items() if k != GROUP_ENV}
    stop = subprocess.run(
        [flower_bin("flwr"), "stop", run_id, CONNECTION],
        env=user_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert stop.returncode == 0, stop.stdout + stop.stderr
    run.thread.join(60)
    assert not run.thread.is_alive()
    assert link.run_processes() == [], labels(link.run_processes())
    assert time.monotonic() - started < 45  # flwr stop's CLI start + Flower's reaction + ours


def test_sigint_to_flwr_run_stops_the_run_and_its_processes(link, tmp_path):
    """Ctrl-C on ``flwr run --stream`` only detaches the CLI in Flower (the run goes on);
    the link stops the run and ends its processes."""
    run = BackgroundRun(
        link, f"num-server-rounds=1000 run-dir='{tmp_path}' hydra-overrides='{SMALL}'"
    )
    run_id = run.wait_until_training()
    cli = [pid for pid, _ in link.run_processes() if label(pid) == "flwr"]
    assert len(cli) == 1
    os.kill(cli[0], signal.SIGINT)
    run.thread.join(90)
    assert not run.thread.is_alive()
    assert link.run_processes() == [], labels(link.run_processes())
    status = run_status(link.env, link.flwr_home, run_id, connection=CONNECTION)
    assert status["status"] == "finished:stopped", status


def test_ctrl_c_on_fedids_demo_leaves_nothing(tmp_path):
    tag = secrets.token_hex(8)
    out = tmp_path / "demo.log"
    env = dict(os.environ, PYTHONPATH=str(ROOT), **{TEST_TAG: tag})
    cmd = [sys.executable, "-m", "fedids.cli", "demo", "--mode", "plain", "--rounds", "1000"]
    cmd += ["--no-alerts", "--run-dir", str(tmp_path / "runs"), "--hydra-overrides", SMALL]
    with open(out, "w") as log:
        demo = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        wait_for(lambda: "[ROUND 1]" in out.read_text(), 300, "round 1")
        wait_for(lambda: has_ray_workers(group_members(tag, TEST_TAG)), 60, "Ray workers")
        agents = {"ray::DashboardAgent", "ray::RuntimeEnvAgent"}
        wait_for(lambda: agents <= set(labels(group_members(tag, TEST_TAG))), 60, "Ray agents")
        members = group_members(tag, TEST_TAG)
        before = labels(members)
        assert {"flower-superlink", "flwr-simulation", "gcs_server", "raylet"} <= set(before)
        # the demo finds its processes by its group tag: every one of them shows the same
        # tag, Ray's agents too (setproctitle wiped it from theirs: a CI run, fixed by
        # SPT_NOENV). The demo itself carries none; it sets the tag for its children.
        tags = {label(pid): group_tags(pid) for pid, _ in members if pid != demo.pid}
        assert len(set().union(*tags.values()) - {""}) == 1, tags
        assert all(len(t) == 1 and "" not in t for t in tags.values()), tags
        demo.send_signal(signal.SIGINT)
        assert demo.wait(60) == 130, out.read_text()[-2000:]
        try:
            wait_for(lambda: not group_members(tag, TEST_TAG), 30, "every process of the demo gone")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {labels(group_members(tag, TEST_TAG))}") from None
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait(10)
        terminate(group_members(tag, TEST_TAG))  # only if an assertion above failed
