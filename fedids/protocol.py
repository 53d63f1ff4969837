"""What the server and the devices say to each other: phases, config keys, plain payloads.

One run, message by message (the server loop is :mod:`fedids.server.loop`, the device
:mod:`fedids.device.client`):

``stats`` (before round 1, one fit per pass)
    Every device summarizes its training split as a fixed-length vector of non-negative
    integers (histograms, counts: :func:`fedids.data.encoding.local_summary`); the server
    sums the vectors (homomorphically in Paillier mode) and hands the totals back. From the
    totals every device derives the same feature encoder and the federation's size ``N``.
``train`` (fit, rounds 1..R)
    Round 1's parameters are the statistics totals: the device builds its encoder and the
    initial model from the run's seed (the same on every device, never sent). Later rounds
    carry the previous round's global model (an encrypted aggregate in Paillier mode).
``evaluate`` (rounds 1..R)
    The device scores its validation split with the new global model and returns a count
    vector (confusion matrix, loss sum, records). In Paillier mode it is encrypted and only
    its federation-wide sum is ever decrypted, by the devices.
``report``
    The encrypted evaluation sum of round r travels to the devices with the next message
    (``report_round`` + ``report_payload`` in the config); they decrypt it and return the
    federation-wide figures in their metrics. After the last round a ``report`` evaluate
    message does the same.

Everything a device receives is untrusted: :func:`read_config` checks types and ranges.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

PHASE_STATS = "stats"
PHASE_TRAIN = "train"
PHASE_EVALUATE = "evaluate"
PHASE_REPORT = "report"
PHASE_REBIND = "rebind"  # buffered runs: re-base the last update on a later version
PHASES = (PHASE_STATS, PHASE_TRAIN, PHASE_EVALUATE, PHASE_REPORT, PHASE_REBIND)

#: payload kinds (the same numbers as :class:`fedids.crypto.codec.Binding` kinds)
KIND_MODEL = 1
KIND_STATS = 2
KIND_EVAL = 3

#: upper bounds a device accepts from the server's config (anything larger is refused)
MAX_LOCAL_EPOCHS = 1000
MAX_ROUND = 10**9
MAX_REPORT_BYTES = 64 * 1024 * 1024

#: per-record loss is capped before it is summed as a fixed-point integer (count vectors)
LOSS_CAP = 100.0
LOSS_SCALE = 16


def wire_run_id(run_id: int) -> int:
    """Flower's run ids are unsigned 64-bit; payload headers are int64: reinterpret the bits
    (the same on the server and on every device, so bindings compare equal)."""
    value = int(run_id) % (1 << 64)
    return value - (1 << 64) if value >= (1 << 63) else value


class ProtocolError(ValueError):
    """A message that an honest peer would not send (one line saying what is wrong)."""


@dataclass(frozen=True)
class Instruction:
    """A checked fit/evaluate config as the device reads it."""

    phase: str
    round: int
    stats_pass: int
    local_epochs: int | None
    final: bool
    run_path: str
    report_round: int
    report_payload: bytes | None
    base_version: int  # rebind: the version the update was trained on
    evaluate_base: bool  # buffered fit: also evaluate the version it trains on


def _int(config: Mapping[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ProtocolError(f"server config {key!r} must be an integer, got {value!r}")
    if not lo <= int(value) <= hi:
        raise ProtocolError(f"server config {key!r}={value} is out of range [{lo}, {hi}]")
    return int(value)


def read_config(config: Mapping[str, Any], default_phase: str) -> Instruction:
    """The server's instruction, checked (types, ranges, known phase)."""
    phase = config.get("phase", default_phase)
    if phase not in PHASES:
        raise ProtocolError(f"server config 'phase'={phase!r} is not one of {PHASES}")
    epochs = None
    if "local_epochs" in config:
        epochs = _int(config, "local_epochs", 1, 1, MAX_LOCAL_EPOCHS)
    payload = config.get("report_payload")
    if payload is not None and (not isinstance(payload, bytes) or len(payload) > MAX_REPORT_BYTES):
        raise ProtocolError("server config 'report_payload' must be bytes of a sane size")
    run_path = config.get("run_path", "")
    if not isinstance(run_path, str):
        raise ProtocolError("server config 'run_path' must be text")
    return Instruction(
        phase=str(phase),
        round=_int(config, "server_round", 0, 0, MAX_ROUND),
        stats_pass=_int(config, "stats_pass", 0, 0, 16),
        local_epochs=epochs,
        final=bool(config.get("final", False)),
        run_path=run_path,
        report_round=_int(config, "report_round", 0, 0, MAX_ROUND),
        report_payload=payload if payload else None,
        base_version=_int(config, "base_version", 0, 0, MAX_ROUND),
        evaluate_base=config.get("evaluate_base", False) is True,
    )


# -- plain payloads ------------------------------------------------------------------------
#: int64 header of a plaintext count vector: magic, kind, tag, run_id, round, length
PLAIN_MAGIC = int.from_bytes(b"FEDIPLN1", "big", signed=True)
_PLAIN_HEADER_LEN = 6


def plain_counts_payload(
    counts: np.ndarray, *, kind: int, tag: int, run_id: int, round: int
) -> list[np.ndarray]:
    """A plaintext count vector as two arrays (plain mode's form of an encrypted one)."""
    vec = np.asarray(counts, dtype=np.int64).ravel()
    if vec.size and int(vec.min()) < 0:
        raise ValueError("count vectors hold non-negative integers")
    header = np.array([PLAIN_MAGIC, kind, tag, run_id, round, vec.size], dtype=np.int64)
    return [header, vec]


def is_plain_counts(arrays: Sequence[np.ndarray]) -> bool:
    if len(arrays) != 2:
        return False
    head = np.asarray(arrays[0])
    return (
        head.dtype == np.int64
        and head.shape == (_PLAIN_HEADER_LEN,)
        and int(head[0]) == PLAIN_MAGIC
        and np.asarray(arrays[1]).dtype == np.int64
    )


def read_plain_counts(
    arrays: Sequence[np.ndarray], *, kind: int, tag: int | None, run_id: int, round: int | None
) -> np.ndarray:
    """The counts of a plain payload after checking what it claims to be."""
    if not is_plain_counts(arrays):
        raise ProtocolError("payload is not a plaintext count vector")
    head = [int(v) for v in np.asarray(arrays[0])]
    vec = np.asarray(arrays[1], dtype=np.int64)
    _, p_kind, p_tag, p_run, p_round, length = head
    if p_kind != kind or (tag is not None and p_tag != tag):
        raise ProtocolError(f"count vector is kind {p_kind}/tag {p_tag}, expected {kind}/{tag}")
    if p_run != run_id or (round is not None and p_round != round):
        raise ProtocolError(
            f"count vector is for run {p_run} round {p_round}, expected run {run_id} round {round}"
        )
    if vec.shape != (length,) or (vec.size and int(vec.min()) < 0):
        raise ProtocolError("count vector is malformed (length or negative entries)")
    return vec


def sum_plain_counts(
    payloads: Sequence[Sequence[np.ndarray]], *, kind: int, tag: int, run_id: int, round: int
) -> list[np.ndarray]:
    """Sum plaintext count vectors of one kind/tag into one plaintext payload."""
    vecs = [read_plain_counts(p, kind=kind, tag=tag, run_id=run_id, round=round) for p in payloads]
    if not vecs or any(v.shape != vecs[0].shape for v in vecs):
        raise ProtocolError("count vectors of different lengths cannot be summed")
    total = np.sum(np.stack(vecs), axis=0, dtype=np.int64)
    return plain_counts_payload(total, kind=kind, tag=tag, run_id=run_id, round=round)


# -- arrays <-> bytes (a payload carried inside a config or metrics value) --------------------
def arrays_to_bytes(arrays: Sequence[np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, *[np.asarray(a) for a in arrays])
    return buf.getvalue()


def bytes_to_arrays(data: bytes, max_arrays: int = 64) -> list[np.ndarray]:
    """Inverse of :func:`arrays_to_bytes`; refuses pickled objects and oversized archives."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            names = sorted(npz.files, key=lambda n: int(n.split("_")[-1]))
            if len(names) > max_arrays:
                raise ProtocolError(f"payload holds {len(names)} arrays (at most {max_arrays})")
            return [npz[n] for n in names]
    except ProtocolError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoding failure is the sender's
        raise ProtocolError(f"payload bytes do not decode ({exc.__class__.__name__})") from None


# -- evaluation count vectors -----------------------------------------------------------------
def eval_vector(cm: np.ndarray, loss_sum: float, clipped: int = 0) -> np.ndarray:
    """``[records, clipped, loss_sum*LOSS_SCALE, confusion matrix row by row]`` as int64."""
    cm = np.asarray(cm, dtype=np.int64)
    head = [int(cm.sum()), int(clipped), int(round(max(0.0, loss_sum) * LOSS_SCALE))]
    return np.concatenate([np.array(head, dtype=np.int64), cm.ravel()])


def eval_vector_length(n_classes: int) -> int:
    return 3 + n_classes * n_classes


@dataclass(frozen=True)
class EvalTotals:
    records: int
    clipped: int
    loss: float  # mean loss per record
    confusion: np.ndarray

    def to_json(self) -> str:
        return json.dumps(
            {
                "records": self.records,
                "clipped": self.clipped,
                "loss": self.loss,
                "confusion": self.confusion.tolist(),
            }
        )


def read_eval_vector(vec: np.ndarray, n_classes: int) -> EvalTotals:
    vec = np.asarray(vec, dtype=np.int64)
    if vec.shape != (eval_vector_length(n_classes),):
        raise ProtocolError(
            f"evaluation vector has {vec.size} entries, {eval_vector_length(n_classes)} "
            f"expected for {n_classes} classes"
        )
    cm = vec[3:].reshape(n_classes, n_classes)
    records = int(vec[0])
    if int(cm.sum()) != records:
        raise ProtocolError("evaluation vector: confusion matrix does not add up to its records")
    loss = float(vec[2]) / LOSS_SCALE / records if records else 0.0
    return EvalTotals(records=records, clipped=int(vec[1]), loss=loss, confusion=cm)


def eval_totals_from_json(text: str, n_classes: int) -> EvalTotals:
    """A device's report of the federation-wide evaluation (checked like any input)."""
    try:
        doc = json.loads(text)
        cm = np.asarray(doc["confusion"], dtype=np.int64)
        totals = EvalTotals(int(doc["records"]), int(doc["clipped"]), float(doc["loss"]), cm)
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"evaluation report does not parse ({exc})") from None
    if cm.shape != (n_classes, n_classes) or int(cm.min(initial=0)) < 0:
        raise ProtocolError(f"evaluation report has a {cm.shape} matrix for {n_classes} classes")
    if int(cm.sum()) != totals.records:
        raise ProtocolError("evaluation report: confusion matrix does not add up to its records")
    return totals
