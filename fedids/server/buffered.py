"""Buffered aggregation: fast devices move the federation on, slow devices still count.

The synchronous loop (:class:`fedids.server.loop.FedIDSServer`) waits for the slowest device
in every round. This subclass replaces only the rounds: every sampled device trains all the
time, its update goes into a buffer as soon as it arrives, and the server makes a new global
*version* when the rule of :mod:`fedids.server.buffer_rule` says so (K updates, BFL's
weighted-average-time threshold, or nothing more on its way), weighting each update by an
integer staleness multiplier. Statistics phase, evaluation counts, reports and records are
the synchronous loop's, so plain and Paillier mode, simulation, in-process runs and
deployments all work the same way.

How a device spends the run: the server sends it one *job* at a time, run in a thread of
its own (Flower's legacy ``ClientProxy`` calls, so results are handled as they arrive):

1. evaluate every global version it has not evaluated yet, oldest first (a device accepts
   global models only in increasing order, and a version's figures need every device's
   validation split: the same records as a synchronous run, so time-to-target comparisons
   hold); the newest one is evaluated inside the next message (fit or rebind), at no extra
   decryption;
2. train on the current version, unless its update for this version is already in the
   buffer (one update per device per aggregation: a fast device gets the next version when
   it exists rather than stuffing the buffer), with the oldest unreported evaluation sum
   attached for it to decrypt (Paillier mode);
3. if its update arrives after the version it was made for exists, re-base it on the
   current version (:mod:`fedids.device.buffered`: ``w + (global_v - global_b)``, encrypted
   again for the open version) instead of training again.

Each version is a "round" record in ``metrics.json`` with the usual fields plus which
devices contributed, their base versions, staleness and multipliers, and what triggered it.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from flwr.common import (
    Code,
    EvaluateIns,
    FitIns,
    parameters_to_ndarrays,
)

from fedids import protocol
from fedids.server import buffer_rule as rule
from fedids.server.buffer_state import Call, DeviceState, Event, Version
from fedids.server.buffered_eval import BufferedEvaluation
from fedids.server.loop import FedIDSServer, payload_bytes
from fedids.server.records import RoundCosts
from strategies.buffered_fedavg import (
    BufferAggregator,
    BufferedUpdate,
    UpdateRejected,
    buffer_aggregator,
)
from strategies.fedids_base import AggregationError

log = logging.getLogger("fedids.server")

#: longest the coordinator sleeps without an event (it re-checks timeouts then)
MAX_WAIT_SECONDS = 1.0


class BufferedFedIDSServer(BufferedEvaluation, FedIDSServer):
    """The fedids run with buffered (FedBuff/BFL) aggregation instead of synchronous rounds."""

    def __init__(
        self, *, aggregation: Mapping[str, Any], round_timeout: float | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.aggregation = dict(aggregation)
        self.round_timeout = round_timeout
        self.aggregator: BufferAggregator = buffer_aggregator(self.strategy, self.aggregation)

    # -- the run ---------------------------------------------------------------------------------
    def _rounds(self, num_rounds: int, timeout: float | None) -> None:
        self.num_versions = int(num_rounds)
        self.call_timeout = timeout if timeout is not None else self.round_timeout
        self._start_buffered()
        pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.max_workers or len(self.devices), thread_name_prefix="fedids-device"
        )
        self.pool = pool
        try:
            self._dispatch()
            while not self._finished():
                self._wait_and_handle()
                self._maybe_aggregate()
                self._dispatch()
                self._check_progress()
            self._report_remaining()
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        self.recorder.rounds.sort(key=lambda r: r["round"])

    def _start_buffered(self) -> None:
        instructions = self.strategy.configure_fit(1, self.parameters, self._client_manager)
        if not instructions:
            raise RuntimeError("round 1: no devices available to train")
        proxies = sorted((p for p, _ in instructions), key=lambda p: str(p.cid))
        self.devices: dict[str, DeviceState] = {str(p.cid): DeviceState(p) for p in proxies}
        self.settings = rule.BufferSettings.from_config(
            self.aggregation,
            num_devices=len(self.devices),
            min_updates=int(self.strategy.min_fit_clients),
        )
        self.times = rule.ResponseTimes(self.settings.smoothing)
        self.events: queue.Queue[Event] = queue.Queue()
        self.version = 0
        self.version_made = time.perf_counter()
        self.versions: dict[int, Version] = {}
        self.buffer: dict[str, BufferedUpdate] = {}
        self._pending_costs = RoundCosts(1, self.version_made)  # failures until the next version
        self.recorder.header["aggregation"] = {
            "name": "buffered",
            "devices": len(self.devices),
            "buffer_size": self.settings.buffer_size,
            "max_staleness": self.settings.max_staleness,
            "staleness_exponent": self.settings.staleness_exponent,
            "max_multiplier": self.settings.max_multiplier,
            "time_factor": self.settings.time_factor,
        }
        log.info(
            "buffered aggregation: %d device(s), K=%d, max staleness %d, multipliers up to %d",
            len(self.devices),
            self.settings.buffer_size,
            self.settings.max_staleness,
            self.settings.max_multiplier,
        )

    def _finished(self) -> bool:
        return (
            self.version >= self.num_versions
            and not any(d.busy for d in self.devices.values())
            and all(v.evaluated for v in self.versions.values())
        )

    # -- jobs ------------------------------------------------------------------------------------
    def _dispatch(self) -> None:
        """Give every idle device what it can do now (evaluations, then a fit)."""
        now = time.perf_counter()
        for dev in self.devices.values():
            if dev.busy:
                continue
            calls: list[Call] = []
            rebind = dev.rebind_base is not None
            fit = not rebind and (
                self.version < self.num_versions
                and dev.base != self.version
                and dev.cid not in self.buffer  # one update per device per aggregation
                and dev.rebind_sent is None
            )
            # the version it trains on (or re-bases on) is evaluated in that message itself
            carried = (fit or rebind) and self.version > 0
            separately = self.version - 1 if carried else self.version
            for u in range(dev.evaluated + 1, separately + 1):
                config = self._config(protocol.PHASE_EVALUATE, u, final=u == self.num_versions)
                ins = EvaluateIns(self.versions[u].parameters, config)
                calls.append(Call("evaluate", u, ins))
            evaluates = self.version if carried and self.version > dev.evaluated else 0
            dev.evaluated = self.version
            if rebind:
                calls.append(self._rebind_call(dev, evaluates))
            if fit:
                config = self._config(
                    protocol.PHASE_TRAIN,
                    self.version + 1,
                    local_epochs=self.plan.local_epochs,
                    final=self.version + 1 == self.num_versions,
                    evaluate_base=bool(evaluates),
                    **self._report_request_for(dev),
                )
                ins = FitIns(self.parameters, config)
                call = Call("fit", self.version, ins, self.version + 1, evaluates=evaluates)
                calls.append(call)
                dev.base, dev.fit_sent = self.version, now
            if calls:
                dev.busy = True
                self.pool.submit(self._job, dev, calls)

    def _rebind_call(self, dev: DeviceState, evaluates: int) -> Call:
        """A late update: the device re-bases it on the current version (sent along, and
        evaluated in the same message) and sends it for the version now open."""
        base, target = int(dev.rebind_base or 0), self.version + 1
        config = self._config(
            protocol.PHASE_REBIND,
            target,
            base_version=base,
            evaluate_base=bool(evaluates),
            **self._report_request_for(dev),
        )
        dev.rebind_base, dev.rebind_sent = None, time.perf_counter()
        ins = FitIns(self.parameters, config)
        return Call("rebind", base, ins, bound_to=target, evaluates=evaluates)

    def _job(self, dev: DeviceState, calls: list[Call]) -> None:
        """Run one device's calls in order (a worker thread); every outcome becomes an event."""
        failed = False
        for call in calls:
            if failed:
                skipped = RuntimeError("not asked: an earlier call to this device failed")
                self.events.put(Event(dev, call, failure=(dev.proxy, skipped)))
                continue
            t0 = time.perf_counter()
            try:
                res = getattr(dev.proxy, call.method)(
                    call.ins, timeout=self.call_timeout, group_id=call.version
                )
                failure = None if res.status.code == Code.OK else (dev.proxy, res)
            except Exception as exc:  # noqa: BLE001 - a device's failure, reported by the loop
                res, failure = None, (dev.proxy, exc)
            failed = failure is not None
            self.events.put(Event(dev, call, res, failure, time.perf_counter() - t0))
        self.events.put(Event(dev, None))

    def _wait_and_handle(self) -> None:
        wait = self._seconds_to_wake()
        try:
            event = self.events.get(timeout=wait)
        except queue.Empty:
            return
        self._handle(event)
        while True:  # everything that arrived meanwhile
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                return
            self._handle(event)

    def _handle(self, ev: Event) -> None:
        if ev.call is None:
            ev.device.busy = False
        elif ev.call.kind in ("fit", "rebind"):
            if ev.call.evaluates and ev.failure is not None:
                # ask for that evaluation again on its own (a failed fit says nothing about it)
                ev.device.evaluated = min(ev.device.evaluated, ev.call.evaluates - 1)
            elif ev.call.evaluates:
                self._on_evaluate(self._evaluation_in(ev), ev.call.evaluates)
            self._on_update(ev, ev.call)
        elif ev.call.kind == "evaluate":
            self._on_evaluate(ev, ev.call.version)
        elif ev.failure is not None:
            self._log_failures("report", ev.call.version, [ev.failure])
        else:
            self._on_report(ev.device, (ev.result.metrics or {}))

    @staticmethod
    def _evaluation_in(ev: Event) -> Event:
        """The evaluation a fit carried (of the version it trained on), as its own event."""
        metrics = ev.result.metrics or {}
        if metrics.get("eval_round") != ev.call.evaluates or "eval" not in metrics:
            missing = RuntimeError("its fit carried no evaluation of the version it trained on")
            return Event(ev.device, ev.call, failure=(ev.device.proxy, missing))
        return Event(ev.device, ev.call, ev.result, seconds=-1.0)  # no call of its own

    # -- updates ---------------------------------------------------------------------------------
    def _on_update(self, ev: Event, call: Call) -> None:
        """A trained (or re-based) update arrived: buffer it, have it re-based, or reject it."""
        dev, base, open_version = ev.device, call.version, self.version + 1
        if call.kind == "fit":
            dev.fit_sent = None
        else:
            dev.rebind_sent = None
        costs = self._pending_costs
        if ev.failure is not None:
            what = "training" if call.kind == "fit" else "re-basing"
            self._log_failures(what, open_version, [ev.failure], costs)
            costs.fit_failures += 1
            return
        res = ev.result
        metrics = dict(res.metrics or {})
        self._on_report(dev, metrics)
        if call.kind == "fit":
            self.times.observe(dev.cid, ev.seconds, weight=self.aggregator.data_weight(res))
        try:
            problem = rule.staleness_problem(open_version, base, self.settings)
            if problem is None and call.bound_to != open_version:
                if call.kind == "fit":
                    # made for a version that exists meanwhile: the device re-bases it
                    dev.rebind_base = base
                    return
                problem = f"re-based for version {call.bound_to}, version {open_version} is open"
            if problem is not None:
                raise UpdateRejected(problem)
            update = self.aggregator.check(dev.cid, res, base, call.bound_to)
        except (UpdateRejected, ValueError) as exc:
            log.warning(
                "version %d: rejected update from device %s: %s", open_version, dev.cid, exc
            )
            costs.rejected += 1
            costs.device_errors.append(f"device {dev.cid}: rejected: {exc}")
            return
        update.rebound = call.kind == "rebind"
        update.upload_bytes = payload_bytes(res.parameters, res.metrics)
        if dev.cid in self.buffer:
            log.info("device %s: a newer update replaces its buffered one", dev.cid)
        self.buffer[dev.cid] = update

    def _view(self, now: float) -> rule.BufferView:
        timeout = self.call_timeout
        in_flight = {
            d.cid: now - d.fit_sent
            for d in self.devices.values()
            if d.fit_sent is not None and (timeout is None or now - d.fit_sent < timeout)
        }
        average = self.times.weighted_average(list(self.devices), in_flight)
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

    def _check_progress(self) -> None:
        """Nothing on its way and no aggregate possible: stop with one line, never hang."""
        if self.version >= self.num_versions or any(d.busy for d in self.devices.values()):
            return
        if not self.events.empty():
            return
        errors = "; ".join(self._pending_costs.device_errors)
        raise AggregationError(
            f"version {self.version + 1}: {len(self.buffer)} valid update(s) from "
            f"{len(self.devices)} device(s), at least {int(self.strategy.min_fit_clients)} "
            "needed" + (f". Failed or rejected: {errors}" if errors else "")
        )
