"""A whole federation on loopback for tests and demos: SuperLink, devices, signed bundles.

Why: to exercise the deployment exactly as docs/deploy.md sets it up (TLS, SuperNode
authentication, every SuperNode with ``--trusted-entities``, runs started from signed bundles
fetched from the app registry) without several machines. Nothing here runs on a device:
devices run :func:`fedids.deploy.flower.supernode_command`; this module only plays the
operator, the publisher and the machines on one host, and cleans up after them.

Every process it starts carries one group tag (:mod:`fedids.deploy.proctrack`), so
:meth:`Federation.close` and :meth:`Federation.stop_run` find helpers, ``flwr-serverapp``
and ``flwr-clientapp`` processes whatever their parent or session, by PID.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedids.deploy.certs import CertPaths, make_supernode_key, write_certs, write_private
from fedids.deploy.connection import write_connection
from fedids.deploy.flower import (
    ACTIVATED,
    REGISTRY_ENV,
    DeployError,
    end_run_processes,
    flower_env,
    run_processes,
    runs_under,
    spawn,
    start_superlink,
    start_supernode,
    superexec_command,
)
from fedids.deploy.flwr_cli import (
    RunResult,
    close_run,
    finish_run,
    interrupted,
    register_supernode,
    run_id_in,
    run_status,
    start_flwr_run,
    stop_run,
)
from fedids.deploy.proctrack import PidStart, Proc, end_group, new_group_tag
from fedids.deploy.registry import AppStore, RegistryServer
from fedids.deploy.signing import (
    build_fab,
    generate_signing_key,
    load_private_key,
    sign_fab,
    write_trusted_entities,
)


@dataclass
class Federation:
    """A SuperLink and its SuperNodes on loopback, with TLS, node auth and trusted entities.

    Use as a context manager (or call :meth:`close`): every process is stopped by PID.
    ``trusted_entities=True`` (the default) starts every SuperNode with
    ``--trusted-entities`` naming this federation's publisher key, and :meth:`start_run`
    runs signed bundles (``flwr run @publisher/app==version``). ``superexec_secret=True``
    (the default) runs ServerApps through a ``flower-superexec`` holding a shared secret,
    so the SuperLink's Runtime API does not hand ServerApp tasks to strangers.
    """

    workdir: Path
    tls: bool = True
    node_auth: bool = True
    trusted_entities: bool = True
    superexec_secret: bool = True
    env_extra: Mapping[str, str] | None = None
    superlink: Proc | None = None
    address: str = ""
    nodes: list[Proc] = field(default_factory=list)
    certs: CertPaths | None = None
    registry: RegistryServer | None = None
    superexec: Proc | None = None

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        self.flwr_home = self.workdir / "flwr_home"
        self.keys_dir = self.workdir / "keys"
        self.group = new_group_tag()
        self.env = flower_env(self.flwr_home, self.env_extra, group=self.group)
        self.store = AppStore(self.workdir / "apps")
        self.trusted_file = self.workdir / "trusted-entities.yaml"
        self.publisher_key = self.workdir / "signing" / "publisher"
        self._runs = 0
        self._active: list[Proc] = []  # runs started and not yet finished

    # --- bring-up ---------------------------------------------------------------------------

    def start(self) -> Federation:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.tls:
            self.certs = write_certs(self.workdir / "certs", ["localhost"], ["127.0.0.1"])
        _, public = generate_signing_key(self.publisher_key.parent, self.publisher_key.name)
        write_trusted_entities(self.trusted_file, [public])
        self.registry = RegistryServer(self.store).serve_in_thread()
        link_env = dict(self.env, **{REGISTRY_ENV: self.registry.url})
        secret = None
        if self.superexec_secret:
            secret = self.workdir / "superexec.secret"
            write_private(secret, secrets.token_hex(32).encode())
        self.superlink, self.address = start_superlink(
            self.workdir,
            link_env,
            tls=self.certs,
            node_auth=self.node_auth,
            superexec_secret=secret,
        )
        if secret is not None:
            cmd = superexec_command(self.address, ca_cert=self.ca_cert, secret=secret)
            self.superexec = spawn(
                "superexec", cmd, self.workdir / "superexec.log", link_env, self.workdir
            )
        write_connection(self.flwr_home, self.address, self.ca_cert)
        return self

    @property
    def ca_cert(self) -> Path | None:
        return self.certs.ca_cert if self.certs else None

    def add_node(self, partition_id: int, num_partitions: int, **kwargs: Any) -> Proc:
        """One device: see :meth:`add_nodes`."""
        return self.add_nodes([partition_id], num_partitions, **kwargs)[0]

    def add_nodes(
        self,
        partition_ids: list[int],
        num_partitions: int,
        *,
        register: bool = True,
        extra_config: Mapping[str, object] | None = None,
        per_node_config: list[Mapping[str, object]] | None = None,
        per_node_env: list[Mapping[str, str]] | None = None,
        max_wait_time: float | None = None,
    ) -> list[Proc]:
        """Make a key per device, register it (unless told not to) and start its SuperNode.

        ``extra_config`` goes into every device's node-config; ``per_node_config[i]`` into
        the i-th one's only (its own key-dir, policy...); ``per_node_env[i]`` into the i-th
        one's environment (e.g. a test that makes one device misbehave, as a compromised
        site could, without touching the product). Registrations run concurrently (each is
        a CLI start of about 2 s).
        """
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
        for i, (name, pid, private) in enumerate(zip(names, partition_ids, keys, strict=True)):
            config: dict[str, object] = {"partition-id": pid, "num-partitions": num_partitions}
            config.update(extra_config or {})
            config.update(per_node_config[i] if per_node_config else {})
            env = dict(self.env, **(per_node_env[i] if per_node_env else {}))
            node = start_supernode(
                self.workdir,
                env,
                self.address,
                name=name,
                node_config=config,
                ca_cert=self.ca_cert,
                private_key=private,
                trusted_entities=self.trusted_file if self.trusted_entities else None,
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

    # --- bundles and runs -----------------------------------------------------------------

    def publish(
        self, app_dir: Path, key: Path | None = None, *, claim_key_id: str | None = None
    ) -> str:
        """Build ``app_dir``'s bundle, sign it (publisher key unless ``key``), store it in
        the registry; returns the app spec to give ``flwr run``."""
        fab = build_fab(app_dir)
        info = self.store.add_fab(fab, str(app_dir))
        signer = load_private_key(key or self.publisher_key)
        self.store.add_signature(info, sign_fab(fab, signer, claim_key_id=claim_key_id))
        return info.spec

    def start_run(self, app: Path | str, run_config: str, *, signed: bool = True) -> Proc:
        """Start ``flwr run`` against this federation; finish it with :meth:`finish`.

        ``app`` is a directory (published and signed first when ``signed``, else uploaded
        unsigned as ``flwr run <dir>`` does) or an app spec already in the registry.
        """
        for p in self.daemons():
            p.remember_children()
        if signed and Path(app).is_dir():
            app = self.publish(Path(app))
        self._runs += 1
        run = start_flwr_run(
            app,
            self.env,
            run_config,
            log_path=self.workdir / f"flwr-run-{self._runs}.log",
            cwd=self.workdir,
        )
        self._active.append(run)
        return run

    def finish(self, run: Proc, timeout: float, started: float | None = None) -> RunResult:
        """Wait for ``run`` (bounded by ``timeout``); then the run is over on every machine.

        A run the CLI left behind (timeout, interrupted stream) is stopped at the SuperLink,
        and its server-side processes still alive (``flwr-serverapp``) are ended by PID. A
        device's ``flwr-clientapp`` is left to finish its message, as on a real device.
        """
        result = finish_run(run, timeout, started)
        self._active = [r for r in self._active if r is not run]
        others = [r for r in self._active if r.alive()]
        if others:  # runs overlap: their processes share the group; the last one cleans up
            if interrupted(result.returncode, result.output) and result.run_id is not None:
                with contextlib.suppress(DeployError, OSError):
                    stop_run(self.env, self.workdir, result.run_id)
            return result
        close_run(
            self.env,
            self.workdir,
            result.output,
            still_running=interrupted(result.returncode, result.output),
            group=self.group,
            daemons=self.daemons(),
            spare=self.nodes,
        )
        return result

    def run(
        self, app: Path | str, run_config: str, timeout: float = 300.0, *, signed: bool = True
    ) -> RunResult:
        """Run ``flwr run`` to completion (bounded by ``timeout``), see :meth:`finish`."""
        started = time.monotonic()
        return self.finish(self.start_run(app, run_config, signed=signed), timeout, started)

    def status(self, result: RunResult) -> dict[str, Any]:
        """The SuperLink's record of a finished run (``flwr ls --run-id``)."""
        if result.run_id is None:
            raise DeployError(f"no run id in the flwr run output:\n{result.output[-2000:]}")
        return run_status(self.env, self.workdir, result.run_id)

    def daemons(self) -> list[Proc]:
        return [p for p in [self.superlink, self.superexec, *self.nodes] if p is not None]

    def run_processes(self) -> list[PidStart]:
        """Live processes of runs (serverapp, clientapps, ``flwr`` calls), not of the federation."""
        return run_processes(self.group, self.daemons())

    def server_run_processes(self) -> list[PidStart]:
        """Run processes on the SuperLink side: ``flwr-serverapp``, ``flwr`` CLI calls."""
        nodes = {n.pid for n in self.nodes}
        return [(p, s) for p, s in self.run_processes() if not runs_under(p, nodes)]

    def device_run_processes(self) -> list[PidStart]:
        """Run processes on the devices: ``flwr-clientapp`` under a SuperNode."""
        nodes = {n.pid for n in self.nodes}
        return [(p, s) for p, s in self.run_processes() if runs_under(p, nodes)]

    def stop_run(self, run: Proc, device_timeout: float = 120.0) -> list[PidStart]:
        """``flwr stop`` the run ``run`` started; end its server side now, then wait up to
        ``device_timeout`` s for each device's ``flwr-clientapp`` to finish its message
        (Flower 1.42 lets it; killing it would wedge the SuperNode). Returns what is still
        running after that (nothing expected).
        """
        run_id = run_id_in(run.log(tail=None))
        if run_id is not None:
            stop_run(self.env, self.workdir, run_id)
        run.wait(10)
        end_run_processes(self.group, self.daemons(), spare=self.nodes)
        deadline = time.monotonic() + device_timeout
        while self.run_processes() and time.monotonic() < deadline:
            time.sleep(0.5)
        return self.run_processes()

    # --- tear-down -------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the SuperNodes, then the SuperLink, then anything else of this group, by PID.

        Server-side run processes go first (``flwr run --stream`` CLIs, ``flwr-serverapp``):
        an open log stream keeps the SuperLink's HTTP server waiting for it to close (45 s
        measured) before it exits.
        """
        end_run_processes(self.group, self.daemons(), spare=self.nodes)
        for node in self.nodes:  # SuperNodes take 2-3 s each to stop: stop them together
            node.begin_stop()
        for node in self.nodes:
            node.finish_stop()
        if self.superexec is not None:
            self.superexec.stop()
        if self.superlink is not None:
            self.superlink.stop()
        end_group(self.group)
        if self.registry is not None:
            self.registry.close()
            self.registry = None

    def __enter__(self) -> Federation:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()

    def all_pids(self) -> list[int]:
        return [p.pid for p in self.daemons()]
