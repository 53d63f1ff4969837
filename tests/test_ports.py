"""Free ports: from the OS, or from FEDIDS_PORT_RANGE (parallel test workers)."""

from __future__ import annotations

import socket

import pytest

from fedids.ports import RANGE_ENV, free_port


def test_without_a_range_the_os_picks_a_bindable_port(monkeypatch) -> None:
    monkeypatch.delenv(RANGE_ENV, raising=False)
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_ports_come_from_the_range_and_skip_ports_in_use(monkeypatch) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        monkeypatch.setenv(RANGE_ENV, f"{taken}-{taken + 1}")
        assert {free_port() for _ in range(20)} == {taken + 1}


@pytest.mark.parametrize("value", ["20000", "a-b", "30000-20000", "80-90", "60000-70000"])
def test_a_bad_range_is_named(monkeypatch, value: str) -> None:
    monkeypatch.setenv(RANGE_ENV, value)
    with pytest.raises(ValueError, match=RANGE_ENV):
        free_port()
