"""Buffered runs: every version evaluated by every device, its figures recorded once.

A mixin of :class:`fedids.server.buffered.BufferedFedIDSServer` (it uses that server's
devices, versions, strategy and recorder). A version's record is written when every device
has evaluated it: in plain mode from the summed count vectors at once; in Paillier mode once
a majority of the devices reported the same decrypted totals (devices decrypt an evaluation
sum inside their next message, or in report messages after the last version).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flwr.common import EvaluateIns, Parameters

from fedids import protocol
from fedids.server.buffer_state import Call, DeviceState, Event, Version

log = logging.getLogger("fedids.server")


class BufferedEvaluation:
    """Evaluation and report bookkeeping of a buffered run."""

    def _on_evaluate(self, ev: Event, version: int) -> None:
        v = self.versions[version]
        if ev.failure is not None:
            v.eval_failures.append(ev.failure)
        else:
            v.evals.append((ev.device.proxy, ev.result))
            if ev.seconds >= 0:
                v.eval_seconds.append(ev.seconds)
        if len(v.evals) + len(v.eval_failures) < len(self.devices):
            return
        v.evals.sort(key=lambda item: str(item[0].cid))
        costs = self._costs[v.number]
        self._log_failures("evaluation", v.number, v.eval_failures, costs)
        costs.evaluate_clients = len(v.evals)
        costs.evaluate_failures = len(v.eval_failures)
        costs.extra["evaluate_call_seconds"] = (
            sum(v.eval_seconds) / len(v.eval_seconds) if v.eval_seconds else 0.0
        )
        costs.evaluate_decrypt_seconds = [
            float(r.metrics.get("decrypt_seconds", 0.0)) for _, r in v.evals
        ]
        self._note_classes([r.metrics for _, r in v.evals])
        self.strategy.aggregate_evaluate(v.number, v.evals, v.eval_failures)
        v.evaluated = True
        if v.number < self.version:
            v.parameters = Parameters(tensors=[], tensor_type="")  # every device has it now
        if self.plan.mode == "plain":
            vec = protocol.read_plain_counts(
                self.strategy.eval_sums[v.number],
                kind=protocol.KIND_EVAL,
                tag=v.number,
                run_id=protocol.wire_run_id(self.plan.run_id),
                round=v.number,
            )
            self._record_version(v, protocol.read_eval_vector(vec, len(self._classes())))

    def _report_request_for(self, dev: DeviceState) -> dict[str, Any]:
        """Paillier: the oldest evaluation sum this device has not decrypted for us yet."""
        if self.plan.mode == "plain":
            return {}
        for v in sorted(self.versions.values(), key=lambda v: v.number):
            if v.evaluated and not v.recorded and v.number not in dev.reported:
                dev.reported.add(v.number)
                return {
                    "report_round": v.number,
                    "report_payload": protocol.arrays_to_bytes(self.strategy.eval_sums[v.number]),
                }
        return {}

    def _on_report(self, dev: DeviceState, metrics: Mapping[str, Any]) -> None:
        u, text = metrics.get("report_round"), metrics.get("report")
        if not isinstance(u, int) or not isinstance(text, str) or u not in self.versions:
            return
        v = self.versions[u]
        if v.recorded:
            return
        v.reports.setdefault(text, []).append(dev.cid)
        if len(v.reports[text]) * 2 > len(self.devices):  # a majority of the devices agree
            self._record_report(v)

    def _record_report(self, v: Version) -> None:
        text = max(v.reports, key=lambda t: len(v.reports[t]))
        if len(v.reports) > 1:
            log.warning(
                "version %d: devices reported %d different evaluation totals; keeping the one "
                "most devices reported",
                v.number,
                len(v.reports),
            )
        self._record_version(v, protocol.eval_totals_from_json(text, len(self._classes())))

    def _report_remaining(self) -> None:
        """After the last version: every device decrypts the sums nobody has reported yet."""
        waiting = [v for v in self.versions.values() if not v.recorded and v.evaluated]
        if not waiting or self.plan.mode == "plain":
            return
        for dev in self.devices.values():
            calls = []
            for v in waiting:
                params = Parameters(tensors=[], tensor_type="numpy.ndarray")
                config = self._config(
                    protocol.PHASE_REPORT,
                    v.number,
                    report_round=v.number,
                    report_payload=protocol.arrays_to_bytes(self.strategy.eval_sums[v.number]),
                )
                calls.append(Call("report", v.number, EvaluateIns(params, config)))
            dev.busy = True
            self.pool.submit(self._job, dev, calls)
        while any(d.busy for d in self.devices.values()):
            self._wait_and_handle()
        for v in waiting:
            if v.recorded:
                continue
            if v.reports:
                self._record_report(v)
            else:
                log.warning("version %d: no device reported the evaluation totals", v.number)

    def _record_version(self, v: Version, totals: protocol.EvalTotals) -> None:
        v.recorded = True
        self._record(v.number, totals)
        self.recorder.rounds.sort(key=lambda r: r["round"])
