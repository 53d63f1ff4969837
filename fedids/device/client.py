"""One device: the fedids protocol (statistics, training, evaluation, reports) as a NumPyClient.

Flower builds a fresh client for every message; what the device must remember between
messages of a run lives in ``context.state`` (:mod:`fedids.device.state`). Everything the
server sends is untrusted: the config is checked (:func:`fedids.protocol.read_config`),
payloads must claim this run, the right round and kind, and (Paillier) come from at least
``min-contributors`` devices; a global model that moved further than honest training can
move it is refused. See :mod:`fedids.protocol` for the sequence of messages.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import numpy as np
import torch
from flwr.client import NumPyClient

from fedids import protocol
from fedids.device import data as device_data
from fedids.device.buffered import evaluate_base, rebind_update, remember_update
from fedids.device.channel import PaillierChannel, PlainChannel
from fedids.device.policy import DevicePolicy, PolicyError
from fedids.device.slowdown import pause_for_slowdown
from fedids.device.state import DeviceState, Setup
from fedids.model import get_weights, set_weights
from fedids.task import confusion, train

log = logging.getLogger("fedids.client")

#: Adam moves a parameter by at most about ``lr`` per step (its update is m/sqrt(v) scaled
#: by lr, and |m/sqrt(v)| stays near 1, at most ~(1-b1)/sqrt(1-b2) ~ 3.2 in the first
#: steps); the bound allows this factor on every step of the longest local training.
ADAM_STEP_FACTOR = 4.0


class FedIDSClient(NumPyClient):
    """A device in a fedids federation (plain or Paillier mode, decided with its policy)."""

    def __init__(
        self,
        cfg: dict[str, Any],
        policy: DevicePolicy,
        state: DeviceState,
        run_id: int,
    ) -> None:
        self.cfg = cfg
        self.policy = policy
        self.state = state
        self.run_id = int(run_id)
        self.mode = policy.mode(str(cfg["mode"]["name"]))
        torch.set_num_threads(int(cfg["train"].get("torch_threads", 1)))
        self.table = device_data.load_table(cfg, policy)
        self._channel: PlainChannel | PaillierChannel | None = None

    @property
    def partition_id(self) -> int:
        return self.policy.partition_id

    # -- plumbing ------------------------------------------------------------------------------
    def channel(self, run_path: str) -> PlainChannel | PaillierChannel:
        if self._channel is None:
            if self.mode == "plain":
                self._channel = PlainChannel(self.run_id)
            else:
                self._channel = PaillierChannel(
                    self.policy, self.cfg["mode"], self.run_id, run_path
                )
        return self._channel

    def _setup(self) -> Setup:
        setup = self.state.setup()
        if setup is None:
            raise protocol.ProtocolError(
                f"device {self.partition_id} has no feature encoder for this run: it missed "
                "the statistics phase and round 1 (a device cannot join a run later)"
            )
        return setup

    def _model(self, setup: Setup) -> torch.nn.Module:
        return device_data.build(self.table, setup, self.cfg)

    def _shapes(self, setup: Setup) -> list[tuple[int, ...]]:
        return [tuple(w.shape) for w in get_weights(self._model(setup))]

    def _max_change(self, setup: Setup, epochs: int) -> float:
        """How far one round of honest training can move any parameter of the average."""
        if self.policy.max_change is not None:
            return self.policy.max_change
        batch = int(self.cfg["train"]["batch_size"])
        steps = math.ceil(setup.n_total / batch) * max(1, epochs)
        return ADAM_STEP_FACTOR * float(self.cfg["train"]["lr"]) * steps + 1e-6

    # -- receiving -----------------------------------------------------------------------------
    def _stats_totals(
        self, arrays: list[np.ndarray], passes: int, run_path: str
    ) -> list[np.ndarray]:
        """Decrypt/read the totals of statistics passes 0..passes-1 (two arrays per pass)."""
        if len(arrays) != 2 * passes:
            raise protocol.ProtocolError(
                f"expected the totals of {passes} statistics pass(es), got {len(arrays)} arrays"
            )
        totals = []
        for p in range(passes):
            got = self.channel(run_path).receive_counts(
                arrays[2 * p : 2 * p + 2],
                kind=protocol.KIND_STATS,
                tag=p,
                round_=0,
                n_counts=device_data.summary_length(self.table, self.cfg, p),
            )
            totals.append(np.asarray(got.values, dtype=np.int64))
        return totals

    def _accept_global(
        self, arrays: list[np.ndarray], round_: int, setup: Setup, run_path: str
    ) -> list[np.ndarray]:
        """The global model of ``round_`` after every check (decrypted once per round)."""
        previous = self.state.previous_global()
        payload_digest = protocol_digest(arrays)
        if previous is not None and self.state.get("global_payload") == payload_digest:
            return previous[1]  # evaluate(r) and fit(r+1) carry the same aggregate
        received = self.channel(run_path).receive_model(arrays, self._shapes(setup), round_=round_)
        weights = received.values
        if previous is not None:
            prev_round, prev_weights = previous
            if prev_round >= round_:
                raise protocol.ProtocolError(
                    f"the server sent the global model of round {round_} after round {prev_round}"
                )
            bound = self._max_change(setup, int(self.cfg["local_epochs"])) * (round_ - prev_round)
            change = max(
                float(np.max(np.abs(a - b))) if a.size else 0.0
                for a, b in zip(weights, prev_weights, strict=True)
            )
            if change > bound:
                raise protocol.ProtocolError(
                    f"device {self.partition_id} refuses the global model of round {round_}: a "
                    f"parameter moved by {change:.3g}, honest training moves it at most "
                    f"{bound:.3g} (node-config max-change to override)"
                )
        self.state.save_global(round_, weights)
        self.state.mark("global_payload", payload_digest)
        return weights

    # -- phases ---------------------------------------------------------------------------------
    def _stats(self, parameters: list[np.ndarray], ins: protocol.Instruction):
        earlier = self._stats_totals(parameters, ins.stats_pass, ins.run_path)
        summary = device_data.local_summary(self.table, self.cfg, ins.stats_pass, earlier)
        channel = self.channel(ins.run_path)
        arrays = channel.send_counts(
            summary, kind=protocol.KIND_STATS, tag=ins.stats_pass, round_=0
        )
        metrics = {
            **channel.metrics(),
            "spec_digest": device_data.spec_digest(self.table),
            "spec_kinds": device_data.spec_kinds(self.table),
        }
        return arrays, 1, metrics

    def _begin(
        self, parameters: list[np.ndarray], ins: protocol.Instruction
    ) -> tuple[Setup, torch.nn.Module]:
        """Round 1: build the encoder from the statistics totals and the initial model."""
        passes = device_data.stats_passes(self.cfg)
        totals = self._stats_totals(parameters, passes, ins.run_path)
        setup = device_data.setup_from_totals(self.table, self.cfg, totals)
        if not 0 < len(self.table.train) <= setup.n_total:
            raise protocol.ProtocolError(
                f"device {self.partition_id}: the federation's record count {setup.n_total} "
                f"does not cover this device's {len(self.table.train)} training records"
            )
        self.state.save_setup(setup)
        model = self._model(setup)
        self.state.save_global(0, get_weights(model))
        self.state.mark("global_payload", "initial")
        return setup, model

    def fit(self, parameters: list[np.ndarray], config: dict[str, Any]):
        ins = protocol.read_config(config, protocol.PHASE_TRAIN)
        if ins.phase == protocol.PHASE_STATS:
            return self._stats(parameters, ins)
        if ins.phase == protocol.PHASE_REBIND:
            return rebind_update(self, parameters, config, ins)
        if ins.phase != protocol.PHASE_TRAIN or ins.round < 1:
            raise protocol.ProtocolError(f"fit with phase {ins.phase!r} round {ins.round}")
        t0 = time.perf_counter()
        metrics: dict[str, Any] = {}
        if ins.report_payload is not None:
            metrics.update(self._report(ins))
        if ins.evaluate_base and ins.round > 1:
            metrics.update(evaluate_base(self, parameters, config, ins.round))
        if ins.round == 1:
            setup, model = self._begin(parameters, ins)
        else:
            setup = self._setup()
            model = self._model(setup)
            set_weights(model, self._accept_global(parameters, ins.round - 1, setup, ins.run_path))
        receive_s = time.perf_counter() - t0
        enc = device_data.encode(self.table, setup, self.cfg)
        channel = self.channel(ins.run_path)
        n_values = sum(w.size for w in get_weights(model))
        channel.start_precompute(n_values)
        epochs = ins.local_epochs or int(self.cfg["local_epochs"])
        t1 = time.perf_counter()
        train(
            model,
            enc.x_train,
            enc.y_train,
            epochs=epochs,
            batch_size=int(self.cfg["train"]["batch_size"]),
            lr=float(self.cfg["train"]["lr"]),
            weight_decay=float(self.cfg["train"]["weight_decay"]),
            n_classes=len(self.table.class_names),
            weighting=str(self.cfg["train"]["class_weighting"]),
            seed=int(self.cfg["seed"]) * 1000 + ins.round * 10 + self.partition_id,
            class_counts=np.asarray(setup.class_counts, dtype=np.int64),
        )
        train_s = time.perf_counter() - t1
        weights = get_weights(model)
        t2 = time.perf_counter()
        share = len(self.table.train) / setup.n_total
        arrays = channel.send_model(
            weights, share=share, round_=ins.round, base_version=ins.round - 1
        )
        metrics.update(channel.metrics())
        remember_update(self, weights, round_=ins.round, base_version=ins.round - 1)
        metrics.update(
            {
                "train_seconds": train_s,
                "encrypt_seconds": time.perf_counter() - t2 if self.mode == "paillier" else 0.0,
                "decrypt_seconds": receive_s,
            }
        )
        slept = pause_for_slowdown(
            self.cfg, self.partition_id, train_s, work=epochs / int(self.cfg["local_epochs"])
        )
        if slept:
            metrics["slowdown_seconds"] = slept
        if self.mode == "plain":
            metrics["partition_id"] = self.partition_id
            return arrays, len(self.table.train), metrics
        return arrays, 1, metrics  # Paillier: the share is inside the encryption

    def evaluate(self, parameters: list[np.ndarray], config: dict[str, Any]):
        ins = protocol.read_config(config, protocol.PHASE_EVALUATE)
        if ins.phase == protocol.PHASE_REPORT:
            return 0.0, 1, self._report(ins)
        if ins.phase != protocol.PHASE_EVALUATE or ins.round < 1:
            raise protocol.ProtocolError(f"evaluate with phase {ins.phase!r} round {ins.round}")
        setup = self._setup()
        model = self._model(setup)

        def accept() -> tuple[list[np.ndarray], float]:
            t0 = time.perf_counter()
            weights = self._accept_global(parameters, ins.round, setup, ins.run_path)
            return weights, time.perf_counter() - t0

        (weights, decrypt_s), enc = _beside(
            accept,
            lambda: device_data.encode(self.table, setup, self.cfg),
            self.mode == "paillier",
        )
        set_weights(model, weights)
        n_classes = len(self.table.class_names)
        cm = confusion(model, enc.x_val, enc.y_val, n_classes)
        loss_sum = _loss_sum(model, enc.x_val, enc.y_val)
        if ins.final:
            self._save_model(model, setup, ins)
        channel = self.channel(ins.run_path)
        clipped = getattr(channel, "last_clipped", 0)
        vec = protocol.eval_vector(cm, loss_sum, clipped)
        payload = channel.send_counts(vec, kind=protocol.KIND_EVAL, tag=ins.round, round_=ins.round)
        metrics: dict[str, Any] = {
            **channel.metrics(),
            "eval": protocol.arrays_to_bytes(payload),
            "class_names": ",".join(self.table.class_names),
            "decrypt_seconds": decrypt_s,
        }
        if self.mode == "plain":
            loss = loss_sum / len(enc.y_val) if len(enc.y_val) else 0.0
            metrics["partition_id"] = self.partition_id
            return float(loss), int(len(enc.y_val)), metrics
        return 0.0, 1, metrics

    def _report(self, ins: protocol.Instruction) -> dict[str, Any]:
        """Decrypt the federation-wide evaluation of round ``ins.report_round``."""
        if ins.report_payload is None or ins.report_round < 1:
            raise protocol.ProtocolError("report requested without a payload or round")
        arrays = protocol.bytes_to_arrays(ins.report_payload)
        got = self.channel(ins.run_path).receive_counts(
            arrays,
            kind=protocol.KIND_EVAL,
            tag=ins.report_round,
            round_=ins.report_round,
            n_counts=protocol.eval_vector_length(len(self.table.class_names)),
        )
        totals = protocol.read_eval_vector(got.values, len(self.table.class_names))
        return {
            "report_round": ins.report_round,
            "report": totals.to_json(),
            "class_names": ",".join(self.table.class_names),
        }

    def _save_model(self, model: torch.nn.Module, setup: Setup, ins: protocol.Instruction) -> None:
        """This device's self-contained detector, in a folder of its own choosing."""
        base = self.policy.model_directory(ins.run_path, self.run_id)
        if base is None:
            return
        detector = device_data.make_detector(
            model,
            self.table,
            setup,
            self.cfg,
            meta={
                "hidden": list(self.cfg["model"]["hidden"]),
                "dropout": float(self.cfg["model"]["dropout"]),
                "partition_id": self.partition_id,
                "mode": self.mode,
                "data_source": self.table.source,
                "synthetic": self.table.synthetic,
                "run_id": self.run_id,
            },
        )
        detector.save(base / "devices" / f"partition-{self.partition_id}" / "model.pt")
        if self.partition_id == 0:
            detector.save(base / "model.pt")
        log.info("device %d saved its model under %s", self.partition_id, base)


def _beside(main: Any, other: Any, overlap: bool) -> tuple[Any, Any]:
    """``(main(), other())``; with ``overlap``, ``other`` runs in a helper thread meanwhile.

    Evaluation overlaps the decryption of the global model (powmods on the crypto pool's
    threads, GIL released) with encoding the validation records, which needs no model: on a
    2-core device the decryption alone leaves the encoding's CPU time idle. An error in
    either is raised here, ``main``'s first.
    """
    if not overlap:
        return main(), other()
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fedids-encode") as helper:
        later = helper.submit(other)
        try:
            first = main()
        except BaseException:
            later.cancel()
            raise
        return first, later.result()


def protocol_digest(arrays: list[np.ndarray]) -> str:
    from fedids.device.state import digest

    return digest([np.asarray(a) for a in arrays])


@torch.no_grad()
def _loss_sum(model: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Sum of per-record cross-entropy (each capped), for the evaluation count vector."""
    if len(x) == 0:
        return 0.0
    model.eval()
    total = 0.0
    for start in range(0, len(x), 65536):
        logits = model(torch.from_numpy(x[start : start + 65536]))
        per = torch.nn.functional.cross_entropy(
            logits, torch.from_numpy(y[start : start + 65536]), reduction="none"
        )
        total += float(per.clamp(max=protocol.LOSS_CAP).sum())
    return total


def client_for(
    cfg: dict[str, Any],
    node_config: dict[str, Any],
    state: Any,
    run_id: int,
    *,
    simulation: bool | None = None,
) -> FedIDSClient:
    """Policy from node-config, experiment from ``cfg``; raises PolicyError with one line."""
    policy = DevicePolicy.from_node_config(node_config, simulation=simulation)
    return FedIDSClient(cfg, policy, DeviceState(state), run_id)


__all__ = ["FedIDSClient", "PolicyError", "client_for"]
