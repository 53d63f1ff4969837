"""What a device remembers between the messages of one run (Flower's ``context.state``).

Flower keeps a ``Context`` per run on every SuperNode (and per simulated node): its
``state`` survives from one message to the next even though every message starts a fresh
ClientApp. The device keeps there what it derived from the statistics phase (the feature
encoder and the federation's size) and the last global model it accepted, which lets it
refuse a global model that moved further than honest training can move it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from flwr.common import ArrayRecord, ConfigRecord, RecordDict

_RECORD = "fedids.device"
_PREVIOUS = "fedids.previous-global"


def digest(arrays: list[np.ndarray]) -> str:
    """SHA-256 over the arrays' dtypes, shapes and bytes (identifies a payload)."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


@dataclass
class Setup:
    """The outcome of the statistics phase, identical on every device of the run."""

    encoder: dict[str, Any]  # Encoder.to_dict()
    n_total: int  # training records in the whole federation
    class_counts: list[int]  # federation-wide training records per class
    spec_digest: str


class DeviceState:
    """Typed access to ``context.state`` (a ``RecordDict``)."""

    def __init__(self, state: RecordDict) -> None:
        self._state = state

    def _record(self) -> ConfigRecord:
        if _RECORD not in self._state:
            self._state[_RECORD] = ConfigRecord({})
        return self._state.config_records[_RECORD]

    # -- setup -------------------------------------------------------------------------------
    def save_setup(self, setup: Setup) -> None:
        rec = self._record()
        rec["setup"] = json.dumps(
            {
                "encoder": setup.encoder,
                "n_total": setup.n_total,
                "class_counts": setup.class_counts,
                "spec_digest": setup.spec_digest,
            }
        ).encode()

    def setup(self) -> Setup | None:
        rec = self._state.config_records.get(_RECORD)
        if rec is None or "setup" not in rec:
            return None
        doc = json.loads(bytes(rec["setup"]).decode())
        return Setup(
            encoder=doc["encoder"],
            n_total=int(doc["n_total"]),
            class_counts=[int(c) for c in doc["class_counts"]],
            spec_digest=str(doc["spec_digest"]),
        )

    # -- the last global model this device accepted --------------------------------------------
    def save_global(self, round_: int, weights: list[np.ndarray]) -> None:
        rec = self._record()
        rec["global_round"] = int(round_)
        rec["global_digest"] = digest(weights)
        self._state[_PREVIOUS] = ArrayRecord([np.asarray(w, dtype=np.float32) for w in weights])

    def previous_global(self) -> tuple[int, list[np.ndarray]] | None:
        rec = self._state.config_records.get(_RECORD)
        if rec is None or "global_round" not in rec or _PREVIOUS not in self._state:
            return None
        arrays = self._state.array_records[_PREVIOUS].to_numpy_ndarrays()
        return int(rec["global_round"]), arrays

    # -- named arrays (e.g. the last trained weights, kept for a buffered re-bind) -----------
    def save_arrays(self, name: str, arrays: list[np.ndarray]) -> None:
        self._state[f"fedids.{name}"] = ArrayRecord([np.asarray(a) for a in arrays])

    def load_arrays(self, name: str) -> list[np.ndarray] | None:
        key = f"fedids.{name}"
        if key not in self._state:
            return None
        return self._state.array_records[key].to_numpy_ndarrays()

    # -- what the device already sent (so a retried message is answered consistently) -------
    def mark(self, key: str, value: int | str) -> None:
        self._record()[key] = value

    def get(self, key: str) -> Any:
        rec = self._state.config_records.get(_RECORD)
        return None if rec is None else rec.get(key)
