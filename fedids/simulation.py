"""Run the Flower app on this machine: a SuperLink in simulation mode that we own.

``flwr run`` with the default ``local`` connection starts a detached SuperLink on fixed
ports that keeps running after the run. For the demo and the tests we instead start
``flower-superlink --simulation`` ourselves on a free loopback port (with the deployment
harness of :mod:`fedids.deploy.processes`), point a private ``FLWR_HOME`` at it, run
``flwr run`` against that connection, and stop the SuperLink by its PID afterwards, so
nothing is left behind and parallel runs do not collide.
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

from fedids.deploy.processes import (
    Proc,
    _bin,
    flower_env,
    start_superlink,
    write_connection,
)

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

    def run(
        self,
        app_dir: str | Path,
        run_config: str = "",
        *,
        timeout: float = 900.0,
        echo: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """``flwr run APP fedids-sim --stream -c RUN_CONFIG``, output echoed live and returned."""
        cmd = [_bin("flwr"), "run", str(app_dir), CONNECTION, "--stream"]
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
        proc = Proc(name="flwr-run", popen=popen, log_path=self.flwr_home / "flwr-run.log")
        out_lines: list[str] = []
        deadline = time.monotonic() + timeout
        try:
            assert popen.stdout is not None
            for line in popen.stdout:
                out_lines.append(line)
                if echo:
                    sys.stdout.write(line)
                    sys.stdout.flush()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"flwr run did not finish within {timeout:.0f} s")
            popen.wait(timeout=max(1.0, deadline - time.monotonic()))
        finally:
            proc.stop()
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
    env = flower_env(home)
    superlink, address = start_superlink(
        home, env, tls=None, node_auth=False, simulation=True, timeout=startup_timeout
    )
    try:
        write_connection(home, address, None, name=CONNECTION)
        yield SimulationLink(home, address, superlink, env, num_supernodes, num_cpus)
    finally:
        superlink.stop()
        if owned_home:
            shutil.rmtree(home, ignore_errors=True)
