"""Bounded waiting for devices: talkative in a deployment, immediate in a simulation.

The simulation case is set up the way Flower 1.42's simulation does it (an in-memory
LinkState with the run pre-registered, ``_register_nodes``, an ``InMemoryGrid``, and the
compat thread that feeds the client manager), so auto-detection is tested on the real
objects, not on a stand-in.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest
from flwr.proto.task_pb2 import Task
from flwr.server.compat.app_utils import start_update_client_manager_thread
from flwr.server.superlink.fleet.vce.vce_api import _register_nodes
from flwr.server.superlink.linkstate import LinkStateFactory
from flwr.server.superlink.linkstate.in_memory_linkstate import RunRecord
from flwr.supercore.constant import FLWR_IN_MEMORY_DB_NAME, NOOP_FEDERATION_ID
from flwr.supercore.object_store import ObjectStoreFactory
from flwr.supercore.run import Run
from flwr.superlink.federation import NoOpFederationManager
from flwr.superlink.grid import InMemoryGrid

from fedids.deploy.waiting import BoundedClientManager, NotEnoughDevices


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def flower_log():
    handler = _Lines()
    logger = logging.getLogger("flwr")
    level = logger.level
    logger.setLevel(logging.INFO)  # whatever an earlier test in this process left it at
    logger.addHandler(handler)
    yield handler.lines
    logger.removeHandler(handler)
    logger.setLevel(level)


def _simulated_grid(num_nodes: int) -> InMemoryGrid:
    factory = LinkStateFactory(
        FLWR_IN_MEMORY_DB_NAME, NoOpFederationManager(), ObjectStoreFactory()
    )
    run = Run.create_empty(7)
    run.primary_task_id, run.federation_id = 11, NOOP_FEDERATION_ID
    state = factory.state()
    state.run_ids[7] = RunRecord(run=run)
    state.task_store[11] = Task(task_id=11, run_id=7)
    grid = InMemoryGrid(state_factory=factory)
    grid.set_run(run)
    _register_nodes(num_nodes, factory)
    return grid


def test_simulation_with_too_few_devices_fails_at_once():
    manager = BoundedClientManager(600)  # simulation=None: detected from Flower's proxies
    thread, stop, ready = start_update_client_manager_thread(_simulated_grid(2), manager)
    ready.wait()
    try:
        started = time.monotonic()
        with pytest.raises(NotEnoughDevices) as err:
            manager.wait_for(3)
        assert time.monotonic() - started < 2
        assert str(err.value) == (
            "federation.min_available_clients=3 but the simulation has 2 device(s): lower "
            "federation.min_available_clients (and min_fit_clients/min_evaluate_clients) or "
            "run with --federation-config 'num-supernodes=3'"
        )
        assert manager.wait_for(2) is True
    finally:
        stop.set()
        thread.join()


def test_deployment_reports_progress_then_stops_with_one_line(flower_log):
    manager = BoundedClientManager(1.0, simulation=False, report_every=0.3)
    started = time.monotonic()
    with pytest.raises(NotEnoughDevices) as err:
        manager.wait_for(2)
    assert 1.0 <= time.monotonic() - started < 3
    assert str(err.value) == (
        "only 0 of federation.min_available_clients=2 devices connected after 1 s "
        "(federation.round_timeout); stopping"
    )
    waiting = [x for x in flower_log if x.startswith("waiting for devices: 0 of ")]
    assert len(waiting) >= 3, flower_log  # about every report_every seconds
    assert flower_log[-1] == str(err.value)


def test_deployment_returns_when_devices_arrive():
    manager = BoundedClientManager(30, simulation=False, report_every=0.2)
    grid = _simulated_grid(2)  # only as a source of two real proxies
    feeder: list = []

    def connect_later() -> None:
        time.sleep(0.5)
        feeder.extend(start_update_client_manager_thread(grid, manager))

    threading.Thread(target=connect_later, daemon=True).start()
    started = time.monotonic()
    try:
        assert manager.wait_for(2) is True
        assert time.monotonic() - started < 10  # Flower's compat thread registers at once
    finally:
        time.sleep(0.6)
        if feeder:
            thread, stop, _ = feeder
            stop.set()
            thread.join()
