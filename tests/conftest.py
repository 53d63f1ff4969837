"""Shared test helpers: small configs.

Most tests drive clients and strategies in-process (``fedids.sim.inprocess``: 0.3 s instead of
a Ray simulation); a few e2e tests run the real ``flwr run`` path.
"""

from __future__ import annotations

import logging
import os
import signal

import flwr  # noqa: F401  (configures its "flwr" logger once, before any test snapshots it)
import pytest

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

# Parallel workers (scripts/test.sh runs pytest-xdist): each picks its ports from a range of
# its own, below the OS's ephemeral range (fedids.ports), so two workers' Flower servers,
# brokers and EaaS never share a port (gRPC binds with SO_REUSEPORT: it would not fail).
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
if _WORKER.startswith("gw") and _WORKER[2:].isdigit():
    _low = 20000 + 2000 * (int(_WORKER[2:]) % 6)
    os.environ["FEDIDS_PORT_RANGE"] = f"{_low}-{_low + 1999}"

#: test folders whose tests run one at a time, on one worker: they start real federations
#: (tests/deploy) or Flower simulations with Ray (tests/e2e, the notebook)
SERIAL_GROUPS = {"deploy": "deploy", "e2e": "flower-simulation"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        parts = item.path.relative_to(config.rootpath).parts
        group = SERIAL_GROUPS.get(parts[1]) if len(parts) > 2 and parts[0] == "tests" else None
        if group is None and item.path.name == "test_notebooks.py":
            group = "flower-simulation"
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))


# Ctrl-C tests send SIGINT to processes this suite starts, as a terminal would. A suite
# started as a background job (`cmd &` in a non-interactive shell, as some CI runners do)
# inherits SIGINT *ignored*, and so would every process it starts: re-enable it here (a
# handled signal is reset to its default in children), so those tests see what a user's
# Ctrl-C does.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _logging_left_as_found():
    """Every test sees the loggers as the test before it found them: a test that runs the ServerApp
    in-process routes ``fedids`` records through Flower's logger (``route_to_flower``), and
    a later test's ``caplog`` would then see its records twice or not at all, depending on
    which tests a worker ran before it."""
    manager = logging.Logger.manager
    loggers = [logging.getLogger()] + [
        lg for lg in manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    saved = [
        (lg, lg.handlers[:], lg.filters[:], lg.level, lg.propagate, lg.disabled) for lg in loggers
    ]
    known = {id(lg) for lg in loggers}
    yield
    for lg, handlers, filters, level, propagate, disabled in saved:
        lg.handlers[:], lg.filters[:] = handlers, filters
        lg.level, lg.propagate, lg.disabled = level, propagate, disabled
    for lg in list(manager.loggerDict.values()):  # loggers first made by this test
        if isinstance(lg, logging.Logger) and id(lg) not in known and lg.name.startswith("fedids"):
            lg.handlers[:], lg.filters[:] = [], []
            lg.level, lg.propagate, lg.disabled = logging.NOTSET, True, False
    manager._clear_cache()


def small_cfg(**run_config):
    from fedids.config import compose_config, to_plain

    rc = {"hydra-overrides": "dataset.rows=6000"}
    rc.update(run_config)
    return to_plain(compose_config(rc))
