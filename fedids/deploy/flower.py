"""Start the real Flower executables: ``flower-superlink`` and ``flower-supernode``.

Why this module: the deployment path (TLS, SuperNode authentication, trusted entities,
node-config) can only be trusted if it is exercised with the real executables. The command
lines built here are the ones ``docs/deploy.md`` tells operators to run;
:func:`supernode_command` is exactly what a device runs. Processes are started in sessions of
their own, carry the harness's group tag (:mod:`fedids.deploy.proctrack`) and log to a file.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from fedids.deploy.certs import CertPaths
from fedids.deploy.proctrack import (
    GROUP_ENV,
    PidStart,
    Proc,
    group_members,
    label,
    proc_stat,
    terminate,
)
from fedids.ports import free_port

#: Flower's exit code for a SuperNode the SuperLink refuses (unregistered key); it is printed
#: in the node's log ("Exit Code: 305") while the process itself exits with status 1
EXIT_NODE_REFUSED = 305
#: what a SuperNode logs once the SuperLink has activated it
ACTIVATED = "SuperNode ID:"
#: what a SuperNode with ``--trusted-entities`` logs when it refuses an app bundle
#: (flwr/supernode/start_client_internal.py, Flower 1.42)
FAB_UNVERIFIED = "FAB verification failed"
FAB_NOT_SIGNED = "The FAB could not be verified"
#: environment variable of the SuperLink naming the app registry it fetches signed bundles
#: from (read by flwr/supercore/constant.py; Flower's default is Flower Hub)
REGISTRY_ENV = "FLWR_SUPERGRID_API_URL"


class DeployError(RuntimeError):
    """A Flower process did not start, or a command failed; the message carries its log tail."""


def flower_bin(name: str) -> str:
    """Path of a console script installed next to this interpreter (the venv's)."""
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else name


def flower_env(
    flwr_home: Path, extra: Mapping[str, str] | None = None, *, group: str | None = None
) -> dict[str, str]:
    """Environment for Flower processes: private FLWR_HOME, no telemetry, no ``uv sync``.

    ``group`` tags every process started with this environment (and all their children) so
    the harness can find and stop them later, whatever their parent or session.
    """
    env = dict(os.environ)
    env.update(
        {
            "FLWR_HOME": str(flwr_home),
            "FLWR_TELEMETRY_ENABLED": "0",
            "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
            "FLWR_DISABLE_UPDATE_CHECK": "1",
            "PYTHONUNBUFFERED": "1",
            # Ray (simulation) otherwise binds its GCS, raylet and agents to every interface
            # under the machine's routable address; with this it uses 127.0.0.1 only
            # (ray/_private/services.py get_node_ip_address, Ray 2.55)
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            # Ray names its processes with setproctitle, which by default overwrites the
            # memory /proc/PID/environ shows: Ray's DashboardAgent and RuntimeEnvAgent then
            # lose the group tag below and outlive a Ctrl-C'd demo unseen (a CI run, Ray
            # 2.55). With this setproctitle leaves the environment alone.
            "SPT_NOENV": "1",
        }
    )
    # the SuperLink starts flwr-serverapp etc. by name: find this interpreter's, even when
    # the venv is not activated (e.g. `.venv/bin/fedids demo`)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    if group is not None:
        env[GROUP_ENV] = group
    if extra:
        env.update(extra)
    return env


def spawn(name: str, cmd: list[str], log_path: Path, env: Mapping[str, str], cwd: Path) -> Proc:
    """Start ``cmd`` in a session of its own, stdout and stderr appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(f"$ {shlex.join(cmd)}\n".encode())
        log.flush()
        popen = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
        )
    return Proc(name=name, popen=popen, log_path=log_path)


def wait_port(proc: Proc, host: str, port: int, timeout: float) -> None:
    """Block until ``host:port`` accepts connections; raise if ``proc`` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise DeployError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log()}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.1)
    raise DeployError(
        f"{proc.name} did not listen on {host}:{port} within {timeout}s:\n{proc.log()}"
    )


def superlink_command(
    *,
    tls: CertPaths | None,
    node_auth: bool = True,
    host: str = "127.0.0.1",
    port: int = 9092,
    simulation: bool = False,
    database: Path | None = None,
    superexec_secret: Path | None = None,
) -> list[str]:
    """The ``flower-superlink`` command line (TLS unless ``tls`` is None).

    ``superexec_secret``: run ServerApps through a separately started ``flower-superexec``
    (:func:`superexec_command`) that proves itself with this shared secret; otherwise the
    SuperLink's Runtime API hands a pending ServerApp task to anyone who asks for it
    (Flower 1.42 marks the secret EXPERIMENTAL; it is ignored in the default isolation).
    """
    cmd = [flower_bin("flower-superlink"), "--host", host, "--port", str(port)]
    cmd.append("--disable-runtime-dependency-installation")
    if tls is None:
        cmd.append("--insecure")
    else:
        cmd += ["--ssl-ca-certfile", str(tls.ca_cert)]
        cmd += ["--ssl-certfile", str(tls.server_cert), "--ssl-keyfile", str(tls.server_key)]
    if node_auth:
        cmd.append("--enable-supernode-auth")
    if simulation:
        cmd.append("--simulation")
    if database is not None:
        cmd += ["--database", str(database)]
    if superexec_secret is not None:
        cmd += ["--isolation", "process", "--superexec-auth-secret-file", str(superexec_secret)]
    return cmd


def superexec_command(address: str, *, ca_cert: Path | None, secret: Path) -> list[str]:
    """``flower-superexec``: launches the ServerApps of a SuperLink started with a secret."""
    cmd = [flower_bin("flower-superexec"), "--runtime-api-address", address]
    cmd += ["--insecure"] if ca_cert is None else ["--root-certificates", str(ca_cert)]
    return cmd + ["--superexec-auth-secret-file", str(secret)]


def start_superlink(
    workdir: Path,
    env: Mapping[str, str],
    *,
    tls: CertPaths | None,
    node_auth: bool = True,
    host: str = "127.0.0.1",
    port: int | None = None,
    timeout: float = 30.0,
    simulation: bool = False,
    superexec_secret: Path | None = None,
) -> tuple[Proc, str]:
    """Start ``flower-superlink`` and wait until it listens.

    ``simulation=True`` runs the federation's devices inside the SuperLink (Ray), as
    ``flwr run`` with a local connection does. Returns the process and its ``host:port``
    address (Fleet, Control and Runtime APIs share it in Flower 1.42).
    """
    port = port or free_port(host)
    cmd = superlink_command(
        tls=tls,
        node_auth=node_auth,
        host=host,
        port=port,
        simulation=simulation,
        superexec_secret=superexec_secret,
    )
    proc = spawn("superlink", cmd, workdir / "superlink.log", env, workdir)
    try:
        wait_port(proc, host, port, timeout)
    except DeployError:
        proc.stop()
        raise
    return proc, f"{host}:{port}"


def node_config_string(values: Mapping[str, object]) -> str:
    """Render ``--node-config``: numbers and booleans bare, strings quoted as TOML."""
    parts = []
    for key, value in values.items():
        if isinstance(value, bool):
            parts.append(f"{key}={'true' if value else 'false'}")
        elif isinstance(value, int | float):
            parts.append(f"{key}={value}")
        else:
            parts.append(f"{key}={json.dumps(str(value))}")
    return " ".join(parts)


def supernode_command(
    superlink: str,
    *,
    node_config: Mapping[str, object],
    ca_cert: Path | None,
    private_key: Path | None,
    trusted_entities: Path | None,
    port: int = 9094,
    max_wait_time: float | None = None,
) -> list[str]:
    """The ``flower-supernode`` command line a device runs.

    ``trusted_entities``: only app bundles signed by one of these Ed25519 keys run here
    (see :mod:`fedids.deploy.signing`). Without it the device runs whatever code the
    SuperLink hands it.
    """
    cmd = [flower_bin("flower-supernode"), "--superlink", superlink, "--port", str(port)]
    cmd += ["--node-config", node_config_string(node_config)]
    cmd += ["--insecure"] if ca_cert is None else ["--root-certificates", str(ca_cert)]
    if private_key is not None:
        cmd += ["--auth-supernode-private-key", str(private_key)]
    if trusted_entities is not None:
        cmd += ["--trusted-entities", str(trusted_entities)]
    if max_wait_time is not None:
        cmd += ["--max-wait-time", str(max_wait_time)]
    return cmd


def start_supernode(
    workdir: Path,
    env: Mapping[str, str],
    superlink: str,
    *,
    name: str,
    node_config: Mapping[str, object],
    ca_cert: Path | None,
    private_key: Path | None,
    trusted_entities: Path | None = None,
    port: int | None = None,
    max_wait_time: float | None = None,
) -> Proc:
    """Start one ``flower-supernode`` (see :func:`supernode_command`); does not wait."""
    cmd = supernode_command(
        superlink,
        node_config=node_config,
        ca_cert=ca_cert,
        private_key=private_key,
        trusted_entities=trusted_entities,
        port=port or free_port(),
        max_wait_time=max_wait_time,
    )
    return spawn(name, cmd, workdir / f"{name}.log", env, workdir)


def wait_for_log(proc: Proc, needle: str, timeout: float) -> bool:
    """Poll ``proc``'s log until ``needle`` appears (True) or ``timeout``/exit (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in proc.log(tail=None):
            return True
        if not proc.alive():
            return needle in proc.log(tail=None)
        time.sleep(0.2)
    return False


def helpers_of(daemons: list[Proc], members: list[PidStart]) -> set[int]:
    """PIDs of the long-lived ``flower-superexec`` each SuperLink/SuperNode starts for itself."""
    pids = {d.pid for d in daemons}
    return {
        pid
        for pid, _ in members
        if (st := proc_stat(pid)) and st[0] in pids and label(pid) == "flower-superexec"
    }


def run_processes(group: str, daemons: list[Proc]) -> list[PidStart]:
    """Processes of group ``group`` that belong to runs, not to the federation itself.

    ``flwr-serverapp``, ``flwr-clientapp``, ``flwr-simulation``, the simulation's Ray cluster
    and ``flwr`` CLI calls; not the SuperLink, the SuperNodes or their ``flower-superexec``.
    """
    members = group_members(group)
    keep = {d.pid for d in daemons} | helpers_of(daemons, members)
    return [(pid, start) for pid, start in members if pid not in keep]


def runs_under(pid: int, ancestors: set[int]) -> bool:
    """True if one of ``ancestors`` is a parent, grandparent... of ``pid``."""
    for _ in range(32):
        st = proc_stat(pid)
        if st is None or st[0] <= 1:
            return False
        if st[0] in ancestors:
            return True
        pid = st[0]
    return False


def end_run_processes(
    group: str, daemons: list[Proc], grace: float = 3.0, *, spare: list[Proc] | None = None
) -> list[PidStart]:
    """SIGTERM the run processes of ``group`` (SIGKILL past ``grace``); returns survivors.

    Processes running under a ``spare`` daemon are left alone: a device's ``flwr-clientapp``
    finishing its message. Killing one mid-message wedges its SuperNode in Flower 1.42 (it
    handled no further message for more than 5 minutes, measured), which is not what a
    device losing a run looks like; it exits by itself once its message is done.
    """
    spared = {p.pid for p in spare or []}
    survivors: list[PidStart] = []
    for _ in range(2):  # a second look catches workers started while we signalled
        procs = [
            (pid, start)
            for pid, start in run_processes(group, daemons)
            if not runs_under(pid, spared)
        ]
        if not procs:
            break
        survivors = terminate(procs, grace)
    return survivors
