"""Bounded, talkative waiting for devices: the ServerApp's client manager.

Why: Flower's ``SimpleClientManager.wait_for`` waits up to a day in silence for
``min_available_clients`` devices. In a deployment a missing device then looks like a hang;
in a simulation the number of devices is fixed when the run starts, so waiting for more can
never succeed (it used to sit out the whole round timeout, 600 s, printing nothing).

* Deployment: waits at most ``timeout`` seconds (``federation.round_timeout``), logging every
  ``report_every`` seconds (30) how many devices are connected of how many required; at the
  bound it raises with one line naming ``federation.min_available_clients``.
* Simulation: every simulated SuperNode is registered before the first device is sampled
  (Flower 1.42 ``flwr/simulation/run_simulation.py`` registers them all at once right after
  starting the ServerApp thread), so fewer devices than required fails at once, saying how
  many the simulation has and how to change either side.

How it knows it runs in a simulation: the caller says so (``simulation=``), or, when left
to ``None``, the proxies Flower registers tell: in a simulation they talk to an
``InMemoryGrid``.
"""

from __future__ import annotations

import time
from logging import INFO, WARNING

from flwr.common.logger import log
from flwr.server.client_manager import SimpleClientManager

#: seconds between "waiting for devices" lines in a deployment
REPORT_EVERY = 30.0
#: a simulation registers its nodes all at once; this covers a ServerApp that asks first
SIMULATION_REGISTRATION_GRACE = 5.0


class NotEnoughDevices(RuntimeError):
    """Fewer devices than ``federation.min_available_clients`` (one-line message)."""


def _in_simulation(manager: SimpleClientManager) -> bool | None:
    """True/False from the registered proxies' grid, None when no proxy is registered yet."""
    if not manager.clients:
        return None
    try:
        from flwr.superlink.grid.inmemory_grid import InMemoryGrid
    except ImportError:  # another Flower layout: cannot tell
        return False
    return any(isinstance(getattr(c, "grid", None), InMemoryGrid) for c in manager.clients.values())


class BoundedClientManager(SimpleClientManager):
    """``wait_for`` bounded by ``timeout`` seconds, with progress lines; see the module doc."""

    def __init__(
        self,
        timeout: float,
        *,
        simulation: bool | None = None,
        report_every: float = REPORT_EVERY,
    ) -> None:
        super().__init__()
        self.timeout = float(timeout)
        self.simulation = simulation
        self.report_every = float(report_every)

    def _refresh(self) -> int:
        """Number of connected devices, after asking Flower to refresh its node list.

        Flower's compat layer wraps ``num_available`` to pull the grid's node ids first;
        ``wait_for`` itself is not wrapped and would only see its 5 s background poll.
        """
        return int(self.num_available())

    def wait_for(self, num_clients: int, timeout: int = 86400) -> bool:
        bound = float(min(timeout, self.timeout))
        started = time.monotonic()
        connected = self._refresh()
        if connected >= num_clients:
            return True
        simulation = self.simulation if self.simulation is not None else _in_simulation(self)
        if simulation is None:  # nothing registered yet: a simulation registers at once
            self._wait_until(num_clients, min(SIMULATION_REGISTRATION_GRACE, bound))
            connected = self._refresh()
            if connected >= num_clients:
                return True
            simulation = self.simulation if self.simulation is not None else _in_simulation(self)
        if simulation:
            raise NotEnoughDevices(
                f"federation.min_available_clients={num_clients} but the simulation has "
                f"{connected} device(s): lower federation.min_available_clients (and "
                f"min_fit_clients/min_evaluate_clients) or run with --federation-config "
                f"'num-supernodes={num_clients}'"
            )
        return self._wait_reporting(num_clients, bound, started)

    def _wait_until(self, num_clients: int, seconds: float) -> bool:
        with self._cv:
            return self._cv.wait_for(lambda: len(self.clients) >= num_clients, timeout=seconds)

    def _wait_reporting(self, num_clients: int, bound: float, started: float) -> bool:
        while True:
            waited = time.monotonic() - started
            left = bound - waited
            if left <= 0:
                break
            log(
                INFO,
                "waiting for devices: %d of federation.min_available_clients=%d connected "
                "(%.0f s of %.0f s)",
                len(self.clients),
                num_clients,
                waited,
                bound,
            )
            if self._wait_until(num_clients, min(self.report_every, left)):
                return True
            self._refresh()
        message = (
            f"only {len(self.clients)} of federation.min_available_clients={num_clients} "
            f"devices connected after {bound:.0f} s (federation.round_timeout); stopping"
        )
        log(WARNING, message)
        raise NotEnoughDevices(message)


__all__ = ["BoundedClientManager", "NotEnoughDevices", "REPORT_EVERY"]
