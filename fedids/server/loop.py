"""The server's side of a fedids run: statistics, rounds, evaluation reports, records.

Flower's legacy ``Server.fit`` runs FedAvg rounds; a fedids run needs more around them
(see :mod:`fedids.protocol`): a statistics phase before round 1 (so that every device
encodes features the same way and knows the federation's size), evaluation counts that
in Paillier mode only the devices can decrypt (their federation-wide sum is reported back
with the next message), and a record per round in ``metrics.json``. This subclass runs
all of it; the strategy (plain or Paillier) only validates and adds.

The same loop drives a simulation, a deployment and the in-process runner
(:mod:`fedids.sim.inprocess`): only the client proxies differ.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from flwr.common import (
    Code,
    Parameters,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.server import Server
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.history import History

from fedids import protocol
from fedids.artifacts import RunRecorder
from fedids.failures import RunStopped, describe_failure, explain
from fedids.server.records import RoundCosts, quality_warning, round_record
from strategies.fedids_base import Contribution, FedIDSStrategyBase

log = logging.getLogger("fedids.server")


@dataclass(frozen=True)
class RunPlan:
    """What the loop needs to know about the run (plain values from the composed config)."""

    run_id: int
    num_rounds: int
    local_epochs: int
    stats_passes: int
    mode: str
    run_path: str  # sent to devices in a simulation only (same machine)
    simulation: bool
    save_plain_parameters: bool
    setup_timeout: float | None = None  # statistics phase (None: the round timeout)
    write_report: bool = False  # report.png beside metrics.json at the end


def payload_bytes(parameters: Parameters, metrics: dict[str, Any] | None) -> int:
    """Bytes a device sent up: serialized arrays plus its metrics (not gRPC/TLS framing)."""
    tensors = sum(len(t) for t in parameters.tensors)
    meta = 0
    for k, v in (metrics or {}).items():
        meta += len(str(k)) + (len(v) if isinstance(v, bytes) else len(str(v)))
    return tensors + meta


def call_clients(
    instructions: Sequence[tuple[ClientProxy, Any]],
    method: str,
    timeout: float | None,
    group_id: int,
    max_workers: int | None = None,
) -> tuple[list[tuple[ClientProxy, Any]], list[tuple[ClientProxy, BaseException | Any]]]:
    """Send fit/evaluate instructions concurrently; failures keep their device.

    Results come back sorted by device id, so sums are computed in the same order in every
    run (floating-point FedAvg is order-sensitive in its last bits).
    """

    def one(proxy: ClientProxy, ins: Any) -> Any:
        return getattr(proxy, method)(ins, timeout=timeout, group_id=group_id)

    results: list[tuple[ClientProxy, Any]] = []
    failures: list[tuple[ClientProxy, BaseException | Any]] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=max_workers) as pool:
        futures = {pool.submit(one, proxy, ins): proxy for proxy, ins in instructions}
        for fut in concurrent.futures.as_completed(futures):
            proxy = futures[fut]
            exc = fut.exception()
            if exc is not None:
                failures.append((proxy, exc))
                continue
            res = fut.result()
            if res.status.code == Code.OK:
                results.append((proxy, res))
            else:
                failures.append((proxy, res))
    results.sort(key=lambda item: str(item[0].cid))
    failures.sort(key=lambda item: str(item[0].cid))
    return results, failures


class FedIDSServer(Server):
    """Statistics phase, FedAvg rounds, evaluation reports and the run's records."""

    strategy: FedIDSStrategyBase

    def __init__(
        self,
        *,
        client_manager: ClientManager,
        strategy: FedIDSStrategyBase,
        plan: RunPlan,
        recorder: RunRecorder,
        on_finish: Callable[[RunRecorder], None] | None = None,
        check_devices: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__(client_manager=client_manager, strategy=strategy)
        self.plan = plan
        self.recorder = recorder
        self.on_finish = on_finish
        self.check_devices = check_devices  # simulation: the federation's size is known
        self.class_names: list[str] | None = None
        self._costs: dict[int, RoundCosts] = {}
        self._pending_report: int | None = None  # round whose encrypted totals await a report
        self._run_started = time.perf_counter()  # reset when the run starts (elapsed_seconds)

    # -- helpers ---------------------------------------------------------------------------------
    def _config(self, phase: str, server_round: int, **extra: Any) -> dict[str, Any]:
        config: dict[str, Any] = {"phase": phase, "server_round": server_round}
        if self.plan.simulation:
            config["run_path"] = self.plan.run_path
        config.update(extra)
        return config

    def _report_request(self) -> dict[str, Any]:
        r = self._pending_report
        if r is None:
            return {}
        return {
            "report_round": r,
            "report_payload": protocol.arrays_to_bytes(self.strategy.eval_sums[r]),
        }

    def _log_failures(
        self, what: str, server_round: int, failures: list[Any], costs: RoundCosts | None = None
    ) -> None:
        for failure in failures:
            line = describe_failure(failure)
            log.warning("round %d %s: %s", server_round, what, line)
            if costs is not None:
                costs.device_errors.append(line)

    # -- statistics phase ----------------------------------------------------------------------
    def statistics_phase(self, timeout: float | None) -> list[np.ndarray]:
        """Run the statistics passes; returns the totals payloads (two arrays per pass)."""
        totals: list[np.ndarray] = []
        if self.check_devices is not None:
            self.check_devices(len(self._client_manager.all()))
        self._client_manager.wait_for(
            int(self.strategy.min_available_clients), int(timeout or 86400)
        )
        for p in range(self.plan.stats_passes):
            params = ndarrays_to_parameters(totals)
            instructions = self.strategy.configure_stats(p, params, self._client_manager)
            if not instructions:
                raise RuntimeError("no devices connected for the statistics phase")
            for _, ins in instructions:
                ins.config = self._config(protocol.PHASE_STATS, 0, stats_pass=p)
            log.info("statistics pass %d: asking %d device(s)", p + 1, len(instructions))
            results, failures = call_clients(
                instructions, "fit", timeout, group_id=0, max_workers=self.max_workers
            )
            self._log_failures(f"statistics pass {p + 1}", 0, failures)
            self._check_spec(results)
            contributions = [
                Contribution(
                    str(proxy.cid), parameters_to_ndarrays(res.parameters), dict(res.metrics or {})
                )
                for proxy, res in results
            ]
            self.strategy.last_rejections = []
            totals += self.strategy.aggregate_counts(
                contributions,
                kind=protocol.KIND_STATS,
                tag=p,
                server_round=0,
                min_needed=int(self.strategy.min_fit_clients),
                failures=[describe_failure(f) for f in failures],
            )
        self.parameters = ndarrays_to_parameters(totals)  # round 1 hands them to the devices
        return totals

    def _check_spec(self, results: list[tuple[ClientProxy, Any]]) -> None:
        """Every device must encode the same input columns (else their models differ)."""
        groups: dict[str, list[tuple[str, str]]] = {}
        for proxy, res in results:
            m = res.metrics or {}
            groups.setdefault(str(m.get("spec_digest", "?")), []).append(
                (str(proxy.cid), str(m.get("spec_kinds", "")))
            )
        if len(groups) <= 1:
            return
        layouts = [
            dict(kv.split("=", 1) for kv in g[0][1].split(",") if "=" in kv)
            for g in groups.values()
        ]
        names = sorted(set().union(*layouts))
        differ = [n for n in names if len({lay.get(n, "absent") for lay in layouts}) > 1]
        detail = "; ".join(
            f"device {g[0][0]}"
            + (f" (+{len(g) - 1} more)" if len(g) > 1 else "")
            + ": "
            + ", ".join(f"{n}={lay.get(n, 'absent')}" for n in differ)
            for g, lay in zip(groups.values(), layouts, strict=True)
        )
        raise RunStopped(
            "devices disagree on the input columns"
            + (f" ({detail})" if differ else f" ({len(groups)} different layouts)")
            + ": give every device the same columns, or pin their kinds in conf/dataset "
            "(numeric_columns, boolean_columns, categorical_columns)"
        )

    # -- rounds -----------------------------------------------------------------------------------
    def train_round(self, server_round: int, timeout: float | None) -> None:
        costs = self._costs.setdefault(server_round, RoundCosts(server_round, time.perf_counter()))
        instructions = self.strategy.configure_fit(
            server_round, self.parameters, self._client_manager
        )
        if not instructions:
            raise RuntimeError(f"round {server_round}: no devices available to train")
        report = self._report_request()
        final = server_round == self.plan.num_rounds
        for _, ins in instructions:
            ins.config = self._config(
                protocol.PHASE_TRAIN,
                server_round,
                local_epochs=self.plan.local_epochs,
                final=final,
                **report,
            )
        t0 = time.perf_counter()
        results, failures = call_clients(
            instructions, "fit", timeout, group_id=server_round, max_workers=self.max_workers
        )
        costs.fit_seconds = time.perf_counter() - t0
        self._log_failures("training", server_round, failures, costs)
        if report:
            self._take_reports(self._pending_report, [(p, r.metrics) for p, r in results])
        t1 = time.perf_counter()
        parameters, metrics = self.strategy.aggregate_fit(server_round, results, failures)
        costs.aggregate_seconds = time.perf_counter() - t1
        if parameters is None:
            raise RuntimeError(f"round {server_round}: nothing was aggregated")
        self.parameters = parameters
        costs.extra["elapsed_seconds"] = time.perf_counter() - self._run_started
        costs.upload_bytes = [payload_bytes(r.parameters, r.metrics) for _, r in results]
        costs.download_bytes = sum(len(t) for t in parameters.tensors)
        costs.fit_clients = int(metrics.get("fit_clients", len(results)))
        costs.fit_failures = len(failures)
        costs.rejected = int(metrics.get("rejected", 0))
        for key, target in (
            ("train_seconds", costs.train_seconds),
            ("encrypt_seconds", costs.encrypt_seconds),
            ("decrypt_seconds", costs.decrypt_seconds),
        ):
            target += [float(r.metrics[key]) for _, r in results if key in (r.metrics or {})]
        if final and self.plan.save_plain_parameters:
            np.savez(
                f"{self.plan.run_path}/global_parameters.npz",
                *parameters_to_ndarrays(parameters),
            )

    def evaluate_round(self, server_round: int, timeout: float | None) -> None:
        costs = self._costs[server_round]
        instructions = self.strategy.configure_evaluate(
            server_round, self.parameters, self._client_manager
        )
        final = server_round == self.plan.num_rounds
        for _, ins in instructions:
            ins.config = self._config(protocol.PHASE_EVALUATE, server_round, final=final)
        t0 = time.perf_counter()
        results, failures = call_clients(
            instructions, "evaluate", timeout, group_id=server_round, max_workers=self.max_workers
        )
        costs.evaluate_seconds = time.perf_counter() - t0
        self._log_failures("evaluation", server_round, failures, costs)
        costs.evaluate_clients = len(results)
        costs.evaluate_failures = len(failures)
        costs.evaluate_decrypt_seconds = [
            float(r.metrics.get("decrypt_seconds", 0.0)) for _, r in results
        ]
        self._note_classes([r.metrics for _, r in results])
        self.strategy.aggregate_evaluate(server_round, results, failures)
        if self.plan.mode == "plain":
            vec = protocol.read_plain_counts(
                self.strategy.eval_sums[server_round],
                kind=protocol.KIND_EVAL,
                tag=server_round,
                run_id=protocol.wire_run_id(self.plan.run_id),
                round=server_round,
            )
            self._record(server_round, protocol.read_eval_vector(vec, len(self._classes())))
        else:
            self._pending_report = server_round

    def _note_classes(self, metrics: list[dict[str, Any]]) -> None:
        for m in metrics:
            names = m.get("class_names")
            if isinstance(names, str) and names:
                listed = names.split(",")
                if self.class_names is None:
                    self.class_names = listed
                elif listed != self.class_names:
                    log.warning(
                        "devices report different class lists: %s vs %s", listed, self.class_names
                    )

    def _classes(self) -> list[str]:
        if self.class_names is None:
            raise RuntimeError("no device reported its class list")
        return self.class_names

    def _take_reports(
        self, server_round: int | None, metrics: list[tuple[ClientProxy, Any]]
    ) -> None:
        """Devices decrypted the evaluation totals of ``server_round``: record them."""
        if server_round is None:
            return
        self._note_classes([m for _, m in metrics])
        reports: dict[str, list[str]] = {}
        for proxy, m in metrics:
            if m.get("report_round") == server_round and isinstance(m.get("report"), str):
                reports.setdefault(m["report"], []).append(str(proxy.cid))
        if not reports:
            log.warning("round %d: no device reported the evaluation totals", server_round)
            return
        text = max(reports, key=lambda t: len(reports[t]))
        if len(reports) > 1:
            log.warning(
                "round %d: devices reported %d different evaluation totals; keeping the one "
                "most devices reported",
                server_round,
                len(reports),
            )
        totals = protocol.eval_totals_from_json(text, len(self._classes()))
        self._record(server_round, totals)
        self._pending_report = None

    def final_report(self, timeout: float | None) -> None:
        if self._pending_report is None:
            return
        params = Parameters(tensors=[], tensor_type="numpy.ndarray")
        instructions = self.strategy.configure_report(params, self._client_manager)
        for _, ins in instructions:
            ins.config = self._config(
                protocol.PHASE_REPORT, self._pending_report, **self._report_request()
            )
        results, failures = call_clients(
            instructions,
            "evaluate",
            timeout,
            group_id=self._pending_report,
            max_workers=self.max_workers,
        )
        self._log_failures("report", self._pending_report, failures)
        self._take_reports(self._pending_report, [(p, r.metrics) for p, r in results])

    def _record(self, server_round: int, totals: protocol.EvalTotals) -> None:
        costs = self._costs[server_round]
        seconds = costs.fit_seconds + costs.aggregate_seconds + costs.evaluate_seconds
        record = round_record(costs, totals, self._classes(), seconds)
        self.recorder.add_round(record)
        log.info(
            "round %d: macro-F1 %.4f (majority baseline %.4f) accuracy %.4f FPR %.4f "
            "(%d records) in %.1f s",
            server_round,
            record["macro_f1"],
            record["baseline_macro_f1"],
            record["accuracy"],
            record["false_positive_rate"],
            record["n_records"],
            seconds,
        )

    # -- the run -----------------------------------------------------------------------------------
    def _rounds(self, num_rounds: int, timeout: float | None) -> None:
        """Synchronous FedAvg rounds (the buffered server replaces this part only)."""
        for server_round in range(1, num_rounds + 1):
            log.info("[ROUND %d]", server_round)
            self.train_round(server_round, timeout)
            self.evaluate_round(server_round, timeout)
        self.final_report(timeout)

    def fit(self, num_rounds: int, timeout: float | None) -> tuple[History, float]:
        if self.plan.write_report:
            from fedids.report import preload

            preload()  # matplotlib's import overlaps the run, drawing at the end is cheap
        try:
            return self._run(num_rounds, timeout)
        except BaseException as exc:
            self.recorder.fail(explain(exc)[0])
            self._draw_report()
            raise

    def _draw_report(self) -> None:
        if not self.plan.write_report:
            return
        try:
            from fedids.report import write_run_report

            write_run_report(self.recorder.run_path)
        except Exception as exc:  # noqa: BLE001 - a figure never fails a finished run
            log.warning("report.png not drawn: %s", explain(exc)[0])

    def _run(self, num_rounds: int, timeout: float | None) -> tuple[History, float]:
        history = History()
        start = self._run_started = time.perf_counter()
        log.info("statistics phase (%d pass(es)) before round 1", self.plan.stats_passes)
        setup_timeout = self.plan.setup_timeout or timeout
        if timeout is not None and setup_timeout is not None:
            setup_timeout = max(setup_timeout, timeout)
        self.statistics_phase(setup_timeout)
        self.recorder.header["setup_seconds"] = time.perf_counter() - start
        self._rounds(num_rounds, timeout)
        warning = quality_warning(
            self.recorder.rounds, synthetic=bool(self.recorder.header.get("synthetic_data"))
        )
        self.recorder.header["quality_warning"] = warning
        self.recorder.flush(status="completed")
        print(
            "\nfedids run summary (figures from the devices' validation splits)\n"
            + self.recorder.summary_table()
            + (f"\n\nWARNING: {warning}" if warning else "")
            + f"\n\nartifacts: {self.recorder.run_path}\n",
            flush=True,
        )
        self._draw_report()
        if self.on_finish is not None:
            self.on_finish(self.recorder)
        return history, time.perf_counter() - start
