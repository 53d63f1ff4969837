"""Buffered runs: when the server makes a new global version, and what the version records.

A mixin of :class:`fedids.server.buffered.BufferedFedIDSServer` (it uses that server's
devices, buffer, settings, response times, strategy and aggregator). After every event the
server takes a snapshot (:class:`fedids.server.buffer_rule.BufferView`) and asks the rule of
:mod:`fedids.server.buffer_rule` whether a version is due; if so, the buffered updates are
summed with their integer staleness multipliers (in Paillier mode without decrypting) and the
version's record gets which devices contributed, their staleness and what triggered it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
from flwr.common import parameters_to_ndarrays

from fedids.server import buffer_rule as rule
from fedids.server.buffer_state import Version
from fedids.server.records import RoundCosts

log = logging.getLogger("fedids.server")

#: longest the coordinator sleeps without an event (it re-checks timeouts then)
MAX_WAIT_SECONDS = 1.0


class BufferedVersions:
    """The version-making half of a buffered run."""

    def _view(self, now: float) -> rule.BufferView:
        timeout = self.call_timeout
        in_flight = {
            d.cid: now - d.fit_sent
            for d in self.devices.values()
            if d.fit_sent is not None and (timeout is None or now - d.fit_sent < timeout)
        }
        average = self.times.weighted_average(
            list(self.devices), in_flight, min_known=self.settings.buffer_size
        )
        threshold = None if average is None else self.settings.time_factor * average
        pinned = sum(
            1
            for d in self.devices.values()
            if d.rebind_base is not None
            or (d.rebind_sent is not None and (timeout is None or now - d.rebind_sent < timeout))
        )
        return rule.BufferView(
            version=self.version,
            final=self.version + 1 == self.num_versions,
            buffered=len(self.buffer),
            in_flight_bases=[self.devices[c].base or 0 for c in in_flight],
            since_version=now - self.version_made,
            threshold=threshold,
            min_updates=int(self.strategy.min_fit_clients),
            pinned=pinned,
        )

    def _seconds_to_wake(self) -> float:
        now = time.perf_counter()
        wait = MAX_WAIT_SECONDS
        if self.version < self.num_versions:
            until = rule.seconds_until_time_trigger(self._view(now), self.settings)
            if until is not None:
                wait = min(wait, until)
        return max(wait, 0.001)

    def _maybe_aggregate(self) -> None:
        if self.version >= self.num_versions:
            return
        view = self._view(time.perf_counter())
        trigger = rule.decide(view, self.settings)
        if trigger is not None:
            self._aggregate(trigger, view.threshold)

    def _aggregate(self, trigger: str, threshold: float | None) -> None:
        new = self.version + 1
        updates = sorted(self.buffer.values(), key=lambda u: u.cid)
        stale = [rule.staleness_of(new, u.base_version) for u in updates]
        multipliers = [rule.staleness_multiplier(s, self.settings) for s in stale]
        t1 = time.perf_counter()
        parameters = self.aggregator.aggregate(new, updates, multipliers)
        made = time.perf_counter()
        costs = self._pending_costs
        costs.round = new
        costs.fit_seconds = t1 - self.version_made
        costs.aggregate_seconds = made - t1
        costs.upload_bytes = [u.upload_bytes for u in updates]
        costs.download_bytes = sum(len(t) for t in parameters.tensors)
        costs.fit_clients = len(updates)
        for key, target in (
            ("train_seconds", costs.train_seconds),
            ("encrypt_seconds", costs.encrypt_seconds),
            ("decrypt_seconds", costs.decrypt_seconds),
        ):
            target += [float(u.metrics[key]) for u in updates if key in u.metrics]
        contributors = []
        for u, s, m in zip(updates, stale, multipliers, strict=True):
            entry: dict[str, Any] = {
                "device": u.cid,
                "base_version": u.base_version,
                "staleness": s,
                "multiplier": m,
            }
            if "partition_id" in u.metrics:  # plain mode only: Paillier devices do not say
                entry["partition_id"] = int(u.metrics["partition_id"])
            if u.local_epochs:
                entry["local_epochs"] = u.local_epochs
            if u.rebound:
                entry["rebound"] = True
            contributors.append(entry)
        costs.extra.update(
            {
                "aggregation": "buffered",
                "elapsed_seconds": made - self._run_started,
                "trigger": trigger,
                "time_threshold_seconds": threshold,
                "contributors": contributors,
            }
        )
        self._costs[new] = costs
        self._pending_costs = RoundCosts(new + 1, made)
        self.buffer.clear()
        self.version, self.parameters, self.version_made = new, parameters, made
        self.versions[new] = Version(new, parameters)
        log.info(
            "[ROUND %d] buffered aggregate of %d update(s) (%s; staleness %s)",
            new,
            len(updates),
            trigger,
            stale,
        )
        if new == self.num_versions and self.plan.save_plain_parameters:
            np.savez(
                f"{self.plan.run_path}/global_parameters.npz", *parameters_to_ndarrays(parameters)
            )
