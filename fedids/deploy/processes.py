"""Compatibility re-exports: the Flower process harness was split by role.

* :mod:`fedids.deploy.proctrack`: process bookkeeping by PID and group tag
* :mod:`fedids.deploy.flower`: starting ``flower-superlink`` / ``flower-supernode``
* :mod:`fedids.deploy.flwr_cli`: the operator's ``flwr`` commands (run, ls, stop, register)
* :mod:`fedids.deploy.connection`: ``$FLWR_HOME/config.toml``
* :mod:`fedids.deploy.harness`: :class:`Federation`, a whole federation for tests and demos

New code imports from those modules; this one keeps older imports working.
"""

from __future__ import annotations

from fedids.deploy.connection import CONNECTION, write_connection
from fedids.deploy.flower import (
    ACTIVATED,
    EXIT_NODE_REFUSED,
    DeployError,
    flower_bin,
    flower_env,
    free_port,
    node_config_string,
    start_superlink,
    start_supernode,
    wait_for_log,
)
from fedids.deploy.flwr_cli import (
    RunResult,
    finish_run,
    flwr_run,
    online_supernodes,
    register_supernode,
    run_status,
    start_flwr_run,
)
from fedids.deploy.harness import Federation
from fedids.deploy.proctrack import Proc, descendants

_bin = flower_bin  # older name, used by fedids.simulation on other branches

__all__ = [
    "ACTIVATED",
    "CONNECTION",
    "EXIT_NODE_REFUSED",
    "DeployError",
    "Federation",
    "Proc",
    "RunResult",
    "descendants",
    "finish_run",
    "flower_bin",
    "flower_env",
    "flwr_run",
    "free_port",
    "node_config_string",
    "online_supernodes",
    "register_supernode",
    "run_status",
    "start_flwr_run",
    "start_superlink",
    "start_supernode",
    "wait_for_log",
    "write_connection",
]
