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

from flwr.common import (
    Code,
    EvaluateIns,
    FitIns,
)

from fedids import protocol
from fedids.server import buffer_rule as rule
from fedids.server.buffer_state import Call, DeviceState, Event, Version
from fedids.server.buffered_eval import BufferedEvaluation
from fedids.server.buffered_versions import BufferedVersions
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


class BufferedFedIDSServer(BufferedVersions, BufferedEvaluation, FedIDSServer):
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
        self.epoch_times = rule.ResponseTimes(self.settings.smoothing)  # training per epoch
        self.fixed_times = rule.ResponseTimes(self.settings.smoothing)  # a fit besides training
        self.rebind_times = rule.ResponseTimes(self.settings.smoothing)  # re-basing messages
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
            "idle_epochs_factor": self.settings.idle_epochs_factor,
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
                epochs = rule.epochs_to_fill(
                    self.plan.local_epochs,
                    self._idle_wait(dev, now),
                    self.epoch_times.seconds.get(dev.cid),
                    self.settings.idle_epochs_factor,
                    self.fixed_times.seconds.get(dev.cid, 0.0),
                    ceiling=protocol.MAX_LOCAL_EPOCHS,
                )
                config = self._config(
                    protocol.PHASE_TRAIN,
                    self.version + 1,
                    local_epochs=epochs,
                    final=self.version + 1 == self.num_versions,
                    evaluate_base=bool(evaluates),
                    **self._report_request_for(dev),
                )
                ins = FitIns(self.parameters, config)
                call = Call(
                    "fit", self.version, ins, self.version + 1, evaluates=evaluates, epochs=epochs
                )
                calls.append(call)
                dev.base, dev.fit_sent = self.version, now
            if calls:
                dev.busy = True
                self.pool.submit(self._job, dev, calls)

    def _idle_wait(self, dev: DeviceState, now: float) -> float | None:
        """Seconds an update ``dev`` starts now would wait anyway: until the expected arrival of
        the latest update on its way that the next version cannot be made without (its base
        is below ``version + 1 - max_staleness``), plus its re-basing message if the version
        it was made for exists already, or of a re-based update on its way (it can only join
        the next version); ``None`` if there is none or a time is unknown."""
        limit = self.version + 1 - self.settings.max_staleness
        waits = []
        for d in self.devices.values():
            if d is not dev and d.rebind_sent is not None:  # pinned to the next version
                rebind = self.rebind_times.seconds.get(d.cid)
                if rebind is None:
                    return None
                waits.append(d.rebind_sent + rebind - now)
            if d is dev or d.fit_sent is None or d.base is None or d.base >= limit:
                continue
            seconds = self.times.seconds.get(d.cid)
            if seconds is None:
                return None
            if d.base + 1 <= self.version:  # it will be re-based on arrival
                seconds += self.rebind_times.seconds.get(d.cid, 0.0)
            waits.append(d.fit_sent + seconds - now)
        return max(waits) if waits else None

    def _observe_epochs(
        self, cid: str, seconds: float, epochs: int, metrics: Mapping[str, Any]
    ) -> None:
        """Split a fit's response time into training per epoch and the rest. The device's
        own ``train_seconds`` (+ ``slowdown_seconds``) says how much was training; it only
        schedules epochs (bounded by ``idle_epochs_factor``), and a value that is not a
        number within the response time counts the whole response as training."""
        try:
            train = float(metrics.get("train_seconds", 0.0)) + float(
                metrics.get("slowdown_seconds", 0.0)
            )
        except (TypeError, ValueError):
            train = 0.0
        if not (0.0 < train <= seconds):  # also refuses NaN
            train = seconds
        self.epoch_times.observe(cid, train / epochs)
        self.fixed_times.observe(cid, seconds - train)

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
        return Call(
            "rebind", base, ins, bound_to=target, evaluates=evaluates, epochs=dev.rebind_epochs
        )

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
            if call.epochs > 0:
                self._observe_epochs(dev.cid, ev.seconds, call.epochs, metrics)
        else:
            self.rebind_times.observe(dev.cid, ev.seconds)
        try:
            problem = rule.staleness_problem(open_version, base, self.settings)
            if problem is None and call.bound_to != open_version:
                if call.kind == "fit":
                    # made for a version that exists meanwhile: the device re-bases it
                    dev.rebind_base, dev.rebind_epochs = base, call.epochs
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
        update.local_epochs = call.epochs
        update.upload_bytes = payload_bytes(res.parameters, res.metrics)
        if dev.cid in self.buffer:
            log.info("device %s: a newer update replaces its buffered one", dev.cid)
        self.buffer[dev.cid] = update

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
