"""Run the Flower app on this machine: a SuperLink in simulation mode that we own.

``flwr run`` with the default ``local`` connection starts a detached SuperLink on fixed
ports that keeps running after the run. For the demo and the tests we instead start
``flower-superlink --simulation`` ourselves on free loopback ports, point a private
``FLWR_HOME`` at it, run ``flwr run`` against that connection, and stop the SuperLink by
its PID afterwards, so nothing is left behind and parallel runs do not collide.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

CONNECTION = "fedids-sim"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bin(name: str) -> str:
    """A console script of this interpreter's environment (works without an activated venv)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else (shutil.which(name) or name)


def stop_process(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """Stop a process we started (its whole process group), by PID: TERM, then KILL."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()
        proc.wait(timeout=timeout)


def _wait_port(port: int, proc: subprocess.Popen, timeout: float, log_path: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"flower-superlink exited with code {proc.returncode}; see {log_path}:\n"
                + log_path.read_text(errors="replace")[-2000:]
            )
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"flower-superlink did not open port {port} within {timeout:.0f} s")


def base_env(flwr_home: Path) -> dict[str, str]:
    env = os.environ.copy()
    env.update(
        {
            "FLWR_HOME": str(flwr_home),
            "FLWR_TELEMETRY_ENABLED": "0",
            "FLWR_DISABLE_UPDATE_CHECK": "1",
            "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    # the apps run in subprocesses of the SuperLink: make sure they find this interpreter's tools
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


@dataclass
class SimulationLink:
    """A running simulation SuperLink and the FLWR_HOME that points at it."""

    flwr_home: Path
    control_port: int
    proc: subprocess.Popen
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    num_supernodes: int = 2
    num_cpus: float = 1.0

    def run(
        self,
        app_dir: str | Path,
        run_config: str = "",
        *,
        timeout: float = 900.0,
        stream_to: Path | None = None,
        echo: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """``flwr run APP fedids-sim --stream -c RUN_CONFIG``; output echoed and returned."""
        cmd = [_bin("flwr"), "run", str(app_dir), CONNECTION, "--stream"]
        cmd += [
            "--federation-config",
            f"num-supernodes={self.num_supernodes} client-resources-num-cpus={self.num_cpus:g}",
        ]
        if run_config:
            cmd += ["--run-config", run_config]
        out_lines: list[str] = []
        proc = subprocess.Popen(
            cmd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                out_lines.append(line)
                if echo:
                    sys.stdout.write(line)
                    sys.stdout.flush()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"flwr run did not finish within {timeout:.0f} s")
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        finally:
            stop_process(proc)
        text = "".join(out_lines)
        if stream_to is not None:
            stream_to.write_text(text)
        return subprocess.CompletedProcess(cmd, proc.returncode, text, "")


def write_connection(flwr_home: Path, address: str, *, insecure: bool = True) -> None:
    flwr_home.mkdir(parents=True, exist_ok=True)
    (flwr_home / "config.toml").write_text(
        f"""[superlink]
default = "{CONNECTION}"

[superlink.{CONNECTION}]
address = "{address}"
insecure = {"true" if insecure else "false"}
"""
    )


@contextmanager
def simulation_link(
    num_supernodes: int = 2,
    num_cpus: float = 1.0,
    flwr_home: Path | None = None,
    startup_timeout: float = 60.0,
) -> Iterator[SimulationLink]:
    """Start a simulation SuperLink on free ports; stop it by PID on exit."""
    owned_home = flwr_home is None
    home = Path(tempfile.mkdtemp(prefix="fedids-flwr-")) if flwr_home is None else flwr_home
    control_port = free_port()  # 1.42 serves Fleet, Control and runtime APIs on one port
    write_connection(home, f"127.0.0.1:{control_port}")
    env = base_env(home)
    log_path = home / "superlink.log"
    cmd = [
        _bin("flower-superlink"),
        "--insecure",
        "--simulation",
        "--disable-runtime-dependency-installation",
        "--host",
        "127.0.0.1",
        "--port",
        str(control_port),
    ]
    with open(log_path, "w") as log_fh:
        proc = subprocess.Popen(
            cmd, env=env, stdout=log_fh, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_port(control_port, proc, startup_timeout, log_path)
        yield SimulationLink(home, control_port, proc, log_path, env, num_supernodes, num_cpus)
    finally:
        stop_process(proc)
        if owned_home:
            shutil.rmtree(home, ignore_errors=True)
