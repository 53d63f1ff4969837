"""Start, watch and stop a real Flower federation (SuperLink + SuperNodes) on one machine.

Why this module: the deployment path (TLS, SuperNode authentication, node-config, ``flwr run``
against a SuperLink) can only be trusted if it is exercised with the real ``flower-superlink``
and ``flower-supernode`` executables. This harness starts them on free loopback ports, writes
the CLI connection into a private ``FLWR_HOME``, and stops every process it started **by PID**
(including the detached helpers Flower spawns: ``flwr-superexec``, ``flwr-serverapp``,
``flwr-clientapp``), so nothing is left holding a port. It never kills anything by name.

Used by ``tests/deploy`` and ``scripts/deploy/local_federation.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedids.deploy.certs import CertPaths, make_supernode_key, write_certs

#: name of the connection written into ``$FLWR_HOME/config.toml``
CONNECTION = "fedids-deploy"

#: Flower's exit code for a SuperNode the SuperLink refuses (unregistered key); it is printed
#: in the node's log ("Exit Code: 305") while the process itself exits with status 1
EXIT_NODE_REFUSED = 305
#: what a SuperNode logs once the SuperLink has activated it
ACTIVATED = "SuperNode ID:"


class DeployError(RuntimeError):
    """A Flower process did not start, or a command failed; the message carries its log tail."""


def _bin(name: str) -> str:
    """Path of a console script installed next to this interpreter (the venv's)."""
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else name


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def flower_env(flwr_home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for Flower processes: private FLWR_HOME, no telemetry, no ``uv sync``."""
    env = dict(os.environ)
    env.update(
        {
            "FLWR_HOME": str(flwr_home),
            "FLWR_TELEMETRY_ENABLED": "0",
            "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
            "FLWR_DISABLE_UPDATE_CHECK": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    # the SuperLink starts flwr-serverapp etc. by name: find this interpreter's, even when
    # the venv is not activated (e.g. `.venv/bin/fedids demo`)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    if extra:
        env.update(extra)
    return env


# --- process bookkeeping by PID -------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, start time) of ``pid`` from /proc, or None if it is gone or a zombie."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name may contain spaces and parentheses: split after the last ')'
    rest = raw[raw.rfind(")") + 2 :].split()
    if rest[0] in ("Z", "X"):
        return None
    return int(rest[1]), rest[19]


def descendants(pid: int) -> list[tuple[int, str]]:
    """All live descendants of ``pid`` as (pid, start time), found through /proc parentage."""
    children: dict[int, list[tuple[int, str]]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _proc_stat(int(entry))
            if st:
                children.setdefault(st[0], []).append((int(entry), st[1]))
    out: list[tuple[int, str]] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child[0])
    return out


def _signal_if_same(pid: int, start: str, sig: int) -> bool:
    """Send ``sig`` to ``pid`` only if it is still the process we saw (guards PID reuse)."""
    st = _proc_stat(pid)
    if st is None or st[1] != start:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
        return True
    return False


def _wait_gone(procs: list[tuple[int, str]], timeout: float) -> list[tuple[int, str]]:
    deadline = time.monotonic() + timeout
    alive = procs
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [(p, s) for p, s in alive if (st := _proc_stat(p)) and st[1] == s]
        # reap zombies that are our own children
        for p, _ in alive:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(p, os.WNOHANG)
        alive = [(p, s) for p, s in alive if (st := _proc_stat(p)) and st[1] == s]
    return alive


@dataclass
class Proc:
    """One started Flower process, its log file, and the helpers it spawned."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    seen: set[tuple[int, str]] = field(default_factory=set)
    _targets: list[tuple[int, str]] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self, tail: int | None = 4000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return text if tail is None else text[-tail:]

    def remember_children(self) -> None:
        """Record the current descendants so :meth:`stop` can reach them after reparenting."""
        if self.alive():
            self.seen.update(descendants(self.pid))

    def wait(self, timeout: float) -> int | None:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """SIGKILL the process and its descendants at once: a device losing power."""
        self.remember_children()
        if self.alive():
            self.popen.kill()
        for pid, start in sorted(self.seen):
            _signal_if_same(pid, start, signal.SIGKILL)
        self.popen.wait(10)
        _wait_gone(sorted(self.seen), timeout=2.0)

    def begin_stop(self) -> None:
        """SIGTERM the main process and every descendant seen (does not wait).

        The helpers (``flwr-superexec``...) run in sessions of their own and would otherwise
        spend seconds retrying a parent that is gone before they notice and exit.
        """
        self.remember_children()
        self._targets = sorted(self.seen)
        if self.alive():
            self.popen.terminate()
        for pid, start in self._targets:
            _signal_if_same(pid, start, signal.SIGTERM)

    def finish_stop(self, timeout: float = 10.0) -> None:
        """Wait for the main process (SIGKILL past ``timeout``), then end its descendants."""
        if self._targets is None:
            self.begin_stop()
        targets = self._targets or []
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)
        for pid, start in targets:
            _signal_if_same(pid, start, signal.SIGTERM)
        for pid, start in _wait_gone(targets, timeout=min(timeout, 5.0)):
            _signal_if_same(pid, start, signal.SIGKILL)
        _wait_gone(targets, timeout=2.0)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM this process and every descendant seen, SIGKILL what outlives ``timeout``."""
        self.begin_stop()
        self.finish_stop(timeout)


def _spawn(name: str, cmd: list[str], log_path: Path, env: Mapping[str, str], cwd: Path) -> Proc:
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


def _wait_port(proc: Proc, host: str, port: int, timeout: float) -> None:
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


# --- SuperLink, connection, SuperNodes ------------------------------------------------------


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
) -> tuple[Proc, str]:
    """Start ``flower-superlink`` (TLS unless ``tls`` is None) and wait until it listens.

    ``simulation=True`` runs the federation's devices inside the SuperLink (Ray), as
    ``flwr run`` with a local connection does.

    Returns the process and its ``host:port`` address (Fleet, Control and runtime share it).
    """
    port = port or free_port(host)
    cmd = [_bin("flower-superlink"), "--host", host, "--port", str(port)]
    cmd.append("--disable-runtime-dependency-installation")
    if tls is None:
        cmd.append("--insecure")
    else:
        cmd += [
            "--ssl-ca-certfile",
            str(tls.ca_cert),
            "--ssl-certfile",
            str(tls.server_cert),
            "--ssl-keyfile",
            str(tls.server_key),
        ]
    if node_auth:
        cmd.append("--enable-supernode-auth")
    if simulation:
        cmd.append("--simulation")
    proc = _spawn("superlink", cmd, workdir / "superlink.log", env, workdir)
    try:
        _wait_port(proc, host, port, timeout)
    except DeployError:
        proc.stop()
        raise
    return proc, f"{host}:{port}"


def write_connection(
    flwr_home: Path, address: str, ca_cert: Path | None, name: str = CONNECTION
) -> Path:
    """Write ``$FLWR_HOME/config.toml`` with one SuperLink connection, made the default."""
    flwr_home.mkdir(parents=True, exist_ok=True)
    lines = ["[superlink]", f'default = "{name}"', "", f"[superlink.{name}]"]
    lines.append(f'address = "{address}"')
    if ca_cert is None:
        lines.append("insecure = true")
    else:
        lines.append(f'root-certificates = "{Path(ca_cert).resolve()}"')
    path = flwr_home / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _flwr(
    args: list[str], env: Mapping[str, str], cwd: Path, timeout: float
) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [_bin("flwr"), *args],
            env=dict(env),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise DeployError(f"flwr {shlex.join(args)} timed out after {timeout}s") from exc


def register_supernode(
    public_key: Path, env: Mapping[str, str], cwd: Path, connection: str = CONNECTION
) -> str:
    """``flwr supernode register``; returns the node id the SuperLink assigned."""
    res = _flwr(
        ["supernode", "register", str(public_key), connection, "--format", "json"], env, cwd, 60
    )
    try:
        data = json.loads(res.stdout)
    except json.JSONDecodeError:
        data = {}
    if res.returncode != 0 or not data.get("success", False):
        raise DeployError(f"registering {public_key} failed:\n{res.stdout}\n{res.stderr}")
    return str(data.get("node-id", data.get("node_id", "")))


def online_supernodes(env: Mapping[str, str], cwd: Path, connection: str = CONNECTION) -> int:
    """Number of SuperNodes the SuperLink reports as online (``flwr supernode list``)."""
    res = _flwr(["supernode", "list", connection, "--format", "json"], env, cwd, 60)
    try:
        nodes = json.loads(res.stdout).get("nodes", [])
    except json.JSONDecodeError:
        return 0
    return sum(1 for n in nodes if str(n.get("status", "")).lower() == "online")


def start_supernode(
    workdir: Path,
    env: Mapping[str, str],
    superlink: str,
    *,
    name: str,
    node_config: Mapping[str, object],
    ca_cert: Path | None,
    private_key: Path | None,
    port: int | None = None,
    max_wait_time: float | None = None,
) -> Proc:
    """Start one ``flower-supernode`` with its node-config (``partition-id`` etc.)."""
    port = port or free_port()
    cmd = [_bin("flower-supernode"), "--superlink", superlink, "--port", str(port)]
    cmd += ["--node-config", node_config_string(node_config)]
    cmd += ["--insecure"] if ca_cert is None else ["--root-certificates", str(ca_cert)]
    if private_key is not None:
        cmd += ["--auth-supernode-private-key", str(private_key)]
    if max_wait_time is not None:
        cmd += ["--max-wait-time", str(max_wait_time)]
    return _spawn(name, cmd, workdir / f"{name}.log", env, workdir)


def node_config_string(values: Mapping[str, object]) -> str:
    """Render ``--node-config``: numbers bare, strings quoted as TOML."""
    parts = []
    for key, value in values.items():
        if isinstance(value, bool):
            parts.append(f"{key}={'true' if value else 'false'}")
        elif isinstance(value, int | float):
            parts.append(f"{key}={value}")
        else:
            parts.append(f"{key}={json.dumps(str(value))}")
    return " ".join(parts)


# --- flwr run ---------------------------------------------------------------------------------


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
        found = re.search(r"Successfully started run (\d+)", self.output)
        return found.group(1) if found else None


def run_status(
    env: Mapping[str, str], cwd: Path, run_id: str, connection: str = CONNECTION
) -> dict[str, Any]:
    """``flwr ls --run-id``: ``status`` (e.g. ``finished:completed``, ``finished:failed``)
    and ``status-details`` (the ServerApp's exception message when it failed).

    Needed because ``flwr run --stream`` exits 0 even when the ServerApp raised.
    """
    res = _flwr(["ls", connection, "--run-id", str(run_id), "--format", "json"], env, cwd, 60)
    try:
        runs = json.loads(res.stdout).get("runs", [])
    except json.JSONDecodeError:
        runs = []
    if not runs:
        raise DeployError(f"flwr ls found no run {run_id}:\n{res.stdout}\n{res.stderr}")
    return dict(runs[0])


def start_flwr_run(
    app_dir: Path,
    env: Mapping[str, str],
    run_config: str,
    *,
    connection: str = CONNECTION,
    log_path: Path | None = None,
) -> Proc:
    """Start ``flwr run <app_dir> <connection> --stream -c <run_config>`` in the background."""
    cmd = [_bin("flwr"), "run", str(app_dir), connection, "--stream"]
    if run_config:
        cmd += ["-c", run_config]
    log_path = log_path or Path(env.get("FLWR_HOME", ".")) / "flwr-run.log"
    return _spawn("flwr-run", cmd, log_path, env, app_dir)


def finish_run(proc: Proc, timeout: float, started: float | None = None) -> RunResult:
    """Wait for a started run; past ``timeout`` stop it by PID and report ``returncode=None``."""
    started = time.monotonic() if started is None else started
    code = proc.wait(max(0.0, timeout - (time.monotonic() - started)))
    if code is None:
        proc.stop(timeout=5)
    return RunResult(code, proc.log(tail=None), time.monotonic() - started)


def flwr_run(
    app_dir: Path,
    env: Mapping[str, str],
    run_config: str,
    *,
    connection: str = CONNECTION,
    timeout: float = 300.0,
    log_path: Path | None = None,
) -> RunResult:
    """``flwr run <app_dir> <connection> --stream -c <run_config>``, bounded by ``timeout``.

    On timeout the CLI is stopped by PID (with its descendants) and ``returncode`` is None.
    """
    started = time.monotonic()
    proc = start_flwr_run(app_dir, env, run_config, connection=connection, log_path=log_path)
    return finish_run(proc, timeout, started)


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


# --- a whole federation -----------------------------------------------------------------------


@dataclass
class Federation:
    """A SuperLink and its SuperNodes on loopback, with TLS and SuperNode authentication.

    Use as a context manager (or call :meth:`close`): every process is stopped by PID.
    """

    workdir: Path
    tls: bool = True
    node_auth: bool = True
    env_extra: Mapping[str, str] | None = None
    superlink: Proc | None = None
    address: str = ""
    nodes: list[Proc] = field(default_factory=list)
    certs: CertPaths | None = None

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        self.flwr_home = self.workdir / "flwr_home"
        self.keys_dir = self.workdir / "keys"
        self.env = flower_env(self.flwr_home, self.env_extra)
        self._runs = 0

    def start(self) -> Federation:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.tls:
            self.certs = write_certs(self.workdir / "certs", ["localhost"], ["127.0.0.1"])
        self.superlink, self.address = start_superlink(
            self.workdir, self.env, tls=self.certs, node_auth=self.node_auth
        )
        write_connection(self.flwr_home, self.address, self.ca_cert)
        return self

    @property
    def ca_cert(self) -> Path | None:
        return self.certs.ca_cert if self.certs else None

    def add_node(
        self,
        partition_id: int,
        num_partitions: int,
        *,
        register: bool = True,
        extra_config: Mapping[str, object] | None = None,
        max_wait_time: float | None = None,
    ) -> Proc:
        """Make a key for the device, register it (unless told not to) and start its node."""
        return self.add_nodes(
            [partition_id],
            num_partitions,
            register=register,
            extra_config=extra_config,
            max_wait_time=max_wait_time,
        )[0]

    def add_nodes(
        self,
        partition_ids: list[int],
        num_partitions: int,
        *,
        register: bool = True,
        extra_config: Mapping[str, object] | None = None,
        max_wait_time: float | None = None,
    ) -> list[Proc]:
        """Several devices at once: keys, registrations run concurrently (each is a CLI call)."""
        names = [f"supernode{len(self.nodes) + i}" for i in range(len(partition_ids))]
        keys: list[Path | None] = [None] * len(names)
        if self.node_auth:
            pairs = [make_supernode_key(self.keys_dir, name) for name in names]
            keys = [private for private, _ in pairs]
            if register:
                with ThreadPoolExecutor(max_workers=len(pairs)) as pool:
                    list(
                        pool.map(
                            lambda kp: register_supernode(kp[1], self.env, self.workdir), pairs
                        )
                    )
        started = []
        for name, pid, private in zip(names, partition_ids, keys, strict=True):
            config: dict[str, object] = {"partition-id": pid, "num-partitions": num_partitions}
            config.update(extra_config or {})
            node = start_supernode(
                self.workdir,
                self.env,
                self.address,
                name=name,
                node_config=config,
                ca_cert=self.ca_cert,
                private_key=private,
                max_wait_time=max_wait_time,
            )
            self.nodes.append(node)
            started.append(node)
        return started

    def wait_online(self, count: int, timeout: float = 60.0) -> None:
        """Block until ``count`` SuperNodes have been activated by the SuperLink.

        A node logs ``SuperNode ID: <id>`` once the SuperLink accepted it; reading that is
        much cheaper than polling ``flwr supernode list`` (a 2 s CLI start each time).
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            live = [n for n in self.nodes if n.alive()]
            if sum(1 for n in live if ACTIVATED in n.log(tail=None)) >= count:
                return
            if len(live) < count:
                dead = "\n".join(
                    f"--- {n.name} exited with {n.popen.returncode}\n{n.log()}"
                    for n in self.nodes
                    if not n.alive()
                )
                raise DeployError(f"fewer than {count} SuperNodes running:\n{dead}")
            time.sleep(0.2)
        logs = "\n".join(f"--- {n.name}\n{n.log()}" for n in self.nodes)
        raise DeployError(f"{count} SuperNodes not online within {timeout}s\n{logs}")

    def start_run(self, app_dir: Path, run_config: str) -> Proc:
        """Start ``flwr run`` against this federation; finish it with :func:`finish_run`."""
        for p in [self.superlink, *self.nodes]:
            if p is not None:
                p.remember_children()
        self._runs += 1
        return start_flwr_run(
            app_dir, self.env, run_config, log_path=self.workdir / f"flwr-run-{self._runs}.log"
        )

    def run(self, app_dir: Path, run_config: str, timeout: float = 300.0) -> RunResult:
        """Run ``flwr run`` to completion (bounded by ``timeout``)."""
        started = time.monotonic()
        return finish_run(self.start_run(app_dir, run_config), timeout, started)

    def status(self, result: RunResult) -> dict[str, Any]:
        """The SuperLink's record of a finished run (see :func:`run_status`)."""
        if result.run_id is None:
            raise DeployError(f"no run id in the flwr run output:\n{result.output[-2000:]}")
        return run_status(self.env, self.workdir, result.run_id)

    def close(self) -> None:
        """Stop the SuperNodes, then the SuperLink, each with its descendants, by PID."""
        for node in self.nodes:  # SuperNodes take 2-3 s each to stop: stop them together
            node.begin_stop()
        for node in self.nodes:
            node.finish_stop()
        if self.superlink is not None:
            self.superlink.stop()

    def __enter__(self) -> Federation:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()

    def all_pids(self) -> Iterator[int]:
        for p in [self.superlink, *self.nodes]:
            if p is not None:
                yield p.pid
