"""What a device does differently in a buffered run: evaluate with the fit, re-base late updates.

**Evaluation with the fit.** Every device evaluates every global version (so each version's
figures cover the same validation records as a synchronous round). When the server sends a
device the version to train on, it asks for that version's evaluation in the same message
(``evaluate_base``): one message instead of two, and no second decryption.

**Re-basing a late update.** A slow device's update often arrives after the version it was
made for (version ``b + 1``, trained on ``b``) already exists. Two things would go wrong if
the server used it as it is: in Paillier mode it cannot even be summed (every update of an
aggregate must be encrypted for that very version: a keyed tag inside the plaintexts binds
it, :mod:`fedids.crypto.binding`), and in both modes a stale FULL model would pull the
average back towards the older version it started from. So the server sends the device the
newest version ``v`` (the "rebind" phase); the device evaluates it (it has to anyway), moves
its trained weights by the same amount the federation moved since its base,
``w + (global_v - global_b)`` (its own progress, re-based on the newest model: FedBuff's use
of a stale delta, still sent as a full model), and encrypts that for version ``v + 1``. No
retraining, one encryption, one message, which also carries the evaluation.

The device keeps its last trained weights and the global model it trained from (in its own
``context.state``, never sent in the clear) and agrees to re-base only as an honest buffered
server asks: the same base version it trained on, a later version than the one it first sent
them for, at most ``MAX_REBIND_STALENESS`` versions after its base, and once per trained
update (so the server cannot collect many copies of one site's weights under several
versions).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from fedids import protocol

if TYPE_CHECKING:
    from fedids.device.client import FedIDSClient

#: the oldest base version (counted back from the version it joins) a device re-bases from
MAX_REBIND_STALENESS = 16
_TRAINED = "trained-update"
_BASE = "trained-base"


def evaluate_base(
    client: FedIDSClient, parameters: list[np.ndarray], config: dict[str, Any], round_: int
) -> dict[str, Any]:
    """Evaluate the global version a message for ``round_`` carries (version ``round_ - 1``)."""
    keep = ("run_path",)
    eval_config = {k: config[k] for k in keep if k in config}
    eval_config.update(phase=protocol.PHASE_EVALUATE, server_round=round_ - 1, final=False)
    _, _, metrics = client.evaluate(parameters, eval_config)
    return {
        "eval": metrics["eval"],
        "eval_round": round_ - 1,
        "class_names": metrics["class_names"],
    }


def remember_update(
    client: FedIDSClient, weights: list[np.ndarray], *, round_: int, base_version: int
) -> None:
    """Keep the weights just sent for ``round_`` and the global model (``base_version``) they
    were trained from: the last global model this device accepted."""
    previous = client.state.previous_global()
    if previous is None or previous[0] != int(base_version):
        return  # nothing consistent to re-base from: a late update is then simply refused
    client.state.save_arrays(_TRAINED, [np.asarray(w, dtype=np.float32) for w in weights])
    client.state.save_arrays(_BASE, previous[1])
    client.state.mark("trained_round", int(round_))
    client.state.mark("trained_base", int(base_version))
    client.state.mark("trained_rebound", 0)


def _check_rebind(client: FedIDSClient, ins: protocol.Instruction) -> int:
    """The kept update's base version, if re-basing it for ``ins.round`` is acceptable."""
    who = f"device {client.partition_id}"
    sent_for, base = client.state.get("trained_round"), client.state.get("trained_base")
    if sent_for is None or base is None or client.state.load_arrays(_TRAINED) is None:
        raise protocol.ProtocolError(f"{who} has no trained update to re-base")
    if int(client.state.get("trained_rebound") or 0):
        raise protocol.ProtocolError(f"{who} already re-based its update once; it refuses again")
    if ins.base_version != int(base):
        raise protocol.ProtocolError(
            f"{who}: re-base asks for an update trained on version {ins.base_version}, its "
            f"update was trained on version {base}"
        )
    if not int(sent_for) < ins.round <= int(base) + 1 + MAX_REBIND_STALENESS:
        raise protocol.ProtocolError(
            f"{who} refuses to re-base its update for version {sent_for} (trained on {base}) "
            f"to version {ins.round}: only later versions, at most {MAX_REBIND_STALENESS} "
            "after its base"
        )
    return int(base)


def rebind_update(
    client: FedIDSClient, parameters: list[np.ndarray], config: dict[str, Any], ins
) -> tuple[Any, int, dict]:
    """Re-base the kept update on the global version ``ins.round - 1`` (``parameters``) and
    send it for version ``ins.round``, trained on the same base."""
    base = _check_rebind(client, ins)
    t0 = time.perf_counter()
    metrics: dict[str, Any] = {}
    if ins.report_payload is not None:
        metrics.update(client._report(ins))
    if ins.evaluate_base:
        metrics.update(evaluate_base(client, parameters, config, ins.round))
    setup = client._setup()
    newest = client._accept_global(parameters, ins.round - 1, setup, ins.run_path)
    trained = client.state.load_arrays(_TRAINED) or []
    origin = client.state.load_arrays(_BASE) or []
    rebased = [
        (np.asarray(w, np.float64) + np.asarray(g, np.float64) - np.asarray(o, np.float64)).astype(
            np.float32
        )
        for w, g, o in zip(trained, newest, origin, strict=True)
    ]
    receive_s = time.perf_counter() - t0
    channel = client.channel(ins.run_path)
    share = len(client.table.train) / setup.n_total
    t1 = time.perf_counter()
    arrays = channel.send_model(rebased, share=share, round_=ins.round, base_version=base)
    client.state.mark("trained_rebound", 1)
    metrics.update(channel.metrics())
    metrics.update(
        {
            "decrypt_seconds": receive_s,
            "encrypt_seconds": time.perf_counter() - t1 if client.mode == "paillier" else 0.0,
        }
    )
    if client.mode == "plain":
        metrics["partition_id"] = client.partition_id
        return arrays, len(client.table.train), metrics
    return arrays, 1, metrics
