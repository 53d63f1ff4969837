"""Run the Flower app on this machine: a SuperLink in simulation mode that we own.

``flwr run`` with the default ``local`` connection starts a detached SuperLink on fixed
ports that keeps running after the run. For the demo and the tests we instead start
``flower-superlink --simulation`` ourselves on a free loopback port (with the deployment
harness of :mod:`fedids.deploy.processes`), point a private ``FLWR_HOME`` at it, run
``flwr run`` against that connection, and stop the SuperLink by its PID afterwards, so
nothing is left behind and parallel runs do not collide.

Clean-up: every process started for the link carries one group tag
(:mod:`fedids.deploy.proctrack`). When ``flwr run`` exits, for whatever reason (the run
finished or failed, someone ran ``flwr stop``, the CLI got SIGINT, our timeout), the run's
processes (``flwr-simulation`` and its Ray cluster: ``gcs_server``, ``raylet``, dashboard,
agents, ``ray::`` workers) are ended by PID; a run still going is stopped first. Flower 1.42
alone keeps a stopped simulation computing to its last round, and Ray's workers outlive
their driver by seconds to minutes. Ray is kept on 127.0.0.1 (see ``flower_env``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fedids.deploy.connection import write_connection
from fedids.deploy.flower import flower_bin, flower_env, run_processes, start_superlink
from fedids.deploy.flwr_cli import close_run, interrupted
from fedids.deploy.proctrack import PidStart, Proc, end_group, new_group_tag, sigterm_raises

CONNECTION = "fedids-sim"


@dataclass
class SimulationLink:
    """A running simulation SuperLink and the FLWR_HOME that points at it."""

    flwr_home: Path
    address: str
    superlink: Proc
    env: dict[str, str]
    num_supernodes: int = 2
    num_cpus: float = 1.0
    group: str = ""

    @property
    def log_path(self) -> Path:
        """Every ``flwr run`` output of this link, appended (tests watch it)."""
        return self.flwr_home / "flwr-run.log"

    def run_processes(self) -> list[PidStart]:
        """Live processes of runs (``flwr-simulation``, Ray, ``flwr`` calls), not the link's."""
        return run_processes(self.group, [self.superlink])

    def run(
        self,
        app_dir: str | Path,
        run_config: str = "",
        *,
        timeout: float = 900.0,
        echo: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """``flwr run APP fedids-sim --stream -c RUN_CONFIG``, output echoed live and returned."""
        cmd = [flower_bin("flwr"), "run", str(app_dir), CONNECTION, "--stream"]
        cmd += [
            "--federation-config",
            f"num-supernodes={self.num_supernodes} client-resources-num-cpus={self.num_cpus:g}",
        ]
        if run_config:
            cmd += ["--run-config", run_config]
        popen = subprocess.Popen(
            cmd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        proc = Proc(name="flwr-run", popen=popen, log_path=self.log_path)
        out_lines: list[str] = []
        deadline = time.monotonic() + timeout
        still_running = True
        try:
            assert popen.stdout is not None
            with open(self.log_path, "a") as log:
                for line in popen.stdout:
                    out_lines.append(line)
                    log.write(line)
                    log.flush()
                    if echo:
                        sys.stdout.write(line)
                        sys.stdout.flush()
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"flwr run did not finish within {timeout:.0f} s")
            popen.wait(timeout=max(1.0, deadline - time.monotonic()))
            still_running = interrupted(popen.returncode, "".join(out_lines))
        finally:
            proc.stop()
            close_run(
                self.env,
                self.flwr_home,
                "".join(out_lines),
                still_running=still_running,
                group=self.group,
                daemons=[self.superlink],
                connection=CONNECTION,
            )
        return subprocess.CompletedProcess(cmd, popen.returncode, "".join(out_lines), "")


@contextmanager
def simulation_link(
    num_supernodes: int = 2,
    num_cpus: float = 1.0,
    flwr_home: Path | None = None,
    startup_timeout: float = 60.0,
) -> Iterator[SimulationLink]:
    """Start a simulation SuperLink on a free port; stop it (and its helpers) by PID on exit."""
    owned_home = flwr_home is None
    home = Path(tempfile.mkdtemp(prefix="fedids-flwr-")) if flwr_home is None else flwr_home
    home.mkdir(parents=True, exist_ok=True)
    group = new_group_tag()
    env = flower_env(home, group=group)
    with sigterm_raises():
        superlink, address = start_superlink(
            home, env, tls=None, node_auth=False, simulation=True, timeout=startup_timeout
        )
        try:
            write_connection(home, address, None, name=CONNECTION)
            yield SimulationLink(home, address, superlink, env, num_supernodes, num_cpus, group)
        finally:
            superlink.stop()
            end_group(group)
            if owned_home:
                shutil.rmtree(home, ignore_errors=True)
