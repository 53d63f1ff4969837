"""What a device does differently in a buffered run: evaluate with the fit, re-bind late updates.

**Evaluation with the fit.** Every device evaluates every global version (so each version's
figures cover the same validation records as a synchronous round). When the server sends a
device the version to train on, it asks for that version's evaluation in the same message
(``evaluate_base``): one message instead of two, and no second decryption.

**Re-binding** an encrypted update to a later global version (buffered Paillier runs).

Every encrypted update carries, inside its plaintexts, a keyed tag of the version it is for
(:mod:`fedids.crypto.binding`), and an aggregate only decodes if every update in it was made
for that very version. In a buffered run a slow device's update often arrives after that
version was made; rather than throw its training away, the server asks the device to
encrypt the same trained weights again for the version now open (the "rebind" phase):
no retraining, just one encryption.

The device keeps its last trained weights (in its own ``context.state``, never sent in the
clear) and agrees to re-bind them only under conditions an honest buffered server meets:
the same base version it trained on, a later version than the one it sent them for, at most
``MAX_REBIND_STALENESS`` versions after its base, and only once per trained update (so the
server cannot collect many copies of one site's weights under different versions).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from fedids import protocol

if TYPE_CHECKING:
    from fedids.device.client import FedIDSClient

#: the oldest base version (counted back from the version it joins) a device re-binds for
MAX_REBIND_STALENESS = 16
_NAME = "trained-update"


def evaluate_base(
    client: FedIDSClient, parameters: list[np.ndarray], config: dict[str, Any], round_: int
) -> dict[str, Any]:
    """Evaluate the global version a fit for ``round_`` trains on (version ``round_ - 1``)."""
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
    """Keep the weights just sent (encrypted) for ``round_``, trained on ``base_version``."""
    client.state.save_arrays(_NAME, [np.asarray(w, dtype=np.float32) for w in weights])
    client.state.mark("trained_round", int(round_))
    client.state.mark("trained_base", int(base_version))
    client.state.mark("trained_rebound", 0)


def rebind_update(client: FedIDSClient, ins: protocol.Instruction) -> tuple[Any, int, dict]:
    """Encrypt the kept weights again, bound to version ``ins.round`` (base unchanged)."""
    who = f"device {client.partition_id}"
    weights = client.state.load_arrays(_NAME)
    sent_for, base = client.state.get("trained_round"), client.state.get("trained_base")
    if weights is None or sent_for is None or base is None:
        raise protocol.ProtocolError(f"{who} has no trained update to re-bind")
    if int(client.state.get("trained_rebound") or 0):
        raise protocol.ProtocolError(f"{who} already re-bound its update once; it refuses again")
    if ins.base_version != int(base):
        raise protocol.ProtocolError(
            f"{who}: re-bind asks for an update trained on version {ins.base_version}, its "
            f"update was trained on version {base}"
        )
    if not int(sent_for) < ins.round <= int(base) + 1 + MAX_REBIND_STALENESS:
        raise protocol.ProtocolError(
            f"{who} refuses to re-bind its update for version {sent_for} (trained on {base}) "
            f"to version {ins.round}: only later versions, at most {MAX_REBIND_STALENESS} "
            "after its base"
        )
    setup = client._setup()
    channel = client.channel(ins.run_path)
    t0 = time.perf_counter()
    share = len(client.table.train) / setup.n_total
    arrays = channel.send_model(weights, share=share, round_=ins.round, base_version=int(base))
    client.state.mark("trained_rebound", 1)
    metrics = {**channel.metrics(), "encrypt_seconds": time.perf_counter() - t0}
    return arrays, 1, metrics
