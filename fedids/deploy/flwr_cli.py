"""The operator's side: ``flwr`` CLI commands against a SuperLink connection.

Why wrappers: ``flwr run --stream`` exits 0 even when the ServerApp failed, and the run's
real outcome is only in ``flwr ls --run-id`` (``finished:failed`` + ``status-details``). These
helpers run the commands with a bounded time, parse their JSON output, and hand back what
tests and scripts need (run id, status, the node id a registration got).
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedids.deploy.connection import CONNECTION
from fedids.deploy.flower import DeployError, end_run_processes, flower_bin, spawn
from fedids.deploy.proctrack import PidStart, Proc


def flwr(
    args: list[str], env: Mapping[str, str], cwd: Path, timeout: float
) -> subprocess.CompletedProcess[str]:
    """Run ``flwr ARGS`` to completion (bounded by ``timeout``)."""
    try:
        return subprocess.run(
            [flower_bin("flwr"), *args],
            env=dict(env),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise DeployError(f"flwr {shlex.join(args)} timed out after {timeout}s") from exc


def _json(res: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    try:
        data = json.loads(res.stdout)
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def register_supernode(
    public_key: Path, env: Mapping[str, str], cwd: Path, connection: str = CONNECTION
) -> str:
    """``flwr supernode register``; returns the node id the SuperLink assigned."""
    res = flwr(
        ["supernode", "register", str(public_key), connection, "--format", "json"], env, cwd, 60
    )
    data = _json(res)
    if res.returncode != 0 or not data.get("success", False):
        raise DeployError(f"registering {public_key} failed:\n{res.stdout}\n{res.stderr}")
    return str(data.get("node-id", data.get("node_id", "")))


def online_supernodes(env: Mapping[str, str], cwd: Path, connection: str = CONNECTION) -> int:
    """Number of SuperNodes the SuperLink reports as online (``flwr supernode list``)."""
    res = flwr(["supernode", "list", connection, "--format", "json"], env, cwd, 60)
    nodes = _json(res).get("nodes", [])
    return sum(1 for n in nodes if str(n.get("status", "")).lower() == "online")


@dataclass
class RunResult:
    """Outcome of one ``flwr run --stream``."""

    returncode: int | None  # None: killed at the timeout
    output: str
    seconds: float

    @property
    def timed_out(self) -> bool:
        return self.returncode is None

    @property
    def run_id(self) -> str | None:
        """The run id the CLI printed (``Successfully started run <id>``)."""
        return run_id_in(self.output)


def run_id_in(output: str) -> str | None:
    """The run id in ``flwr run`` output, if it got that far."""
    found = re.search(r"Successfully started run (\d+)", output)
    return found.group(1) if found else None


def run_status(
    env: Mapping[str, str], cwd: Path, run_id: str, connection: str = CONNECTION
) -> dict[str, Any]:
    """``flwr ls --run-id``: ``status`` (e.g. ``finished:completed``, ``finished:failed``)
    and ``status-details`` (the ServerApp's exception message when it failed).
    """
    res = flwr(["ls", connection, "--run-id", str(run_id), "--format", "json"], env, cwd, 60)
    runs = _json(res).get("runs", [])
    if not runs:
        raise DeployError(f"flwr ls found no run {run_id}:\n{res.stdout}\n{res.stderr}")
    return dict(runs[0])


def stop_run(
    env: Mapping[str, str], cwd: Path, run_id: str, connection: str = CONNECTION
) -> subprocess.CompletedProcess[str]:
    """``flwr stop RUN_ID``: the SuperLink marks the run ``finished:stopped``.

    What that does NOT do in Flower 1.42 (measured): a simulation goes on to its last round;
    in a deployment ``flwr-serverapp`` exits within seconds but each device's
    ``flwr-clientapp`` finishes the message it is working on. The harnesses therefore end
    the run's server-side processes themselves and wait for the devices'.
    """
    return flwr(["stop", str(run_id), connection], env, cwd, 60)


def start_flwr_run(
    app: str | Path,
    env: Mapping[str, str],
    run_config: str,
    *,
    connection: str = CONNECTION,
    log_path: Path | None = None,
    cwd: Path | None = None,
    extra_args: list[str] | None = None,
) -> Proc:
    """Start ``flwr run APP CONNECTION --stream -c RUN_CONFIG`` in the background.

    ``app`` is a directory (the CLI builds an unsigned bundle from it) or an app spec
    ``@publisher/name==version`` that the SuperLink fetches, with its signatures, from the
    app registry.
    """
    cmd = [flower_bin("flwr"), "run", str(app), connection, "--stream", *(extra_args or [])]
    if run_config:
        cmd += ["-c", run_config]
    log_path = log_path or Path(env.get("FLWR_HOME", ".")) / "flwr-run.log"
    if cwd is None:
        cwd = Path(app) if Path(app).is_dir() else log_path.parent
    return spawn("flwr-run", cmd, log_path, env, cwd)


def finish_run(proc: Proc, timeout: float, started: float | None = None) -> RunResult:
    """Wait for a started run; past ``timeout`` stop it by PID and report ``returncode=None``."""
    started = time.monotonic() if started is None else started
    code = proc.wait(max(0.0, timeout - (time.monotonic() - started)))
    if code is None:
        proc.stop(timeout=5)
    return RunResult(code, proc.log(tail=None), time.monotonic() - started)


def flwr_run(
    app: str | Path,
    env: Mapping[str, str],
    run_config: str,
    *,
    connection: str = CONNECTION,
    timeout: float = 300.0,
    log_path: Path | None = None,
) -> RunResult:
    """``flwr run`` to completion, bounded by ``timeout`` (then stopped by PID)."""
    started = time.monotonic()
    proc = start_flwr_run(app, env, run_config, connection=connection, log_path=log_path)
    return finish_run(proc, timeout, started)


def interrupted(returncode: int | None, output: str) -> bool:
    """True if ``flwr run --stream`` ended before its run did (timeout, signal, error).

    The stream ends by itself only when the run has finished; SIGINT makes the CLI print
    "Exiting logstream" and exit 0 while the run goes on at the SuperLink.
    """
    return returncode != 0 or "Exiting logstream" in output[-500:]


def close_run(
    env: Mapping[str, str],
    cwd: Path,
    output: str,
    *,
    still_running: bool,
    group: str,
    daemons: list[Proc],
    spare: list[Proc] | None = None,
    connection: str = CONNECTION,
) -> list[PidStart]:
    """After ``flwr run`` exited: stop the run if it may still be going, then end its
    processes (group ``group``; not ``daemons`` and their superexec, nor what runs under a
    ``spare`` daemon, see :func:`end_run_processes`). Returns survivors.
    """
    run_id = run_id_in(output)
    if still_running and run_id is not None:
        with contextlib.suppress(DeployError, OSError):
            stop_run(env, cwd, run_id, connection=connection)
    return end_run_processes(group, daemons, spare=spare)
