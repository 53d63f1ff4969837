"""Test fixtures' building blocks: WUSTL-schema flows and an 'oracle' model.pt.

The oracle is a real fedids model file (``fedids.model`` MLP with no hidden layer, saved
with ``Detector.save``) whose weights make the predicted class a function of one feature,
``sTos``: a flow with ``sTos = k`` is classified as class ``k`` with probability ~1. Tests
can thus say exactly which flows are attacks and check every alert.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from confluent_kafka import Consumer, TopicPartition

from fedids.data.features import Scaler
from fedids.model import Detector, build_model

WUSTL_COLUMNS = (
    "StartTime LastTime SrcAddr DstAddr Mean Sport Dport SrcPkts DstPkts TotPkts DstBytes "
    "SrcBytes TotBytes SrcLoad DstLoad Load SrcRate DstRate Rate SrcLoss DstLoss Loss pLoss "
    "SrcJitter DstJitter SIntPkt DIntPkt Proto Dur TcpRtt IdleTime Sum Min Max sDSb sTtl dTtl "
    "sIpId dIpId SAppBytes DAppBytes TotAppByte SynAck RunTime sTos SrcJitAct DstJitAct "
    "Traffic Target"
).split()
WUSTL_DROP = ("StartTime", "LastTime", "SrcAddr", "DstAddr", "sIpId", "dIpId")
FEATURES = [c for c in WUSTL_COLUMNS if c not in WUSTL_DROP and c not in ("Traffic", "Target")]
CLASSES = ["normal", "DoS", "Reconn", "CommInj", "Backdoor"]
KEY_FEATURE = "sTos"
T0 = 1_640_995_200.0  # 2022-01-01T00:00:00Z, a multiple of 60


def oracle_model(path: Path, classes: Sequence[str] = CLASSES, sharpness: float = 300.0) -> Path:
    """Save a model.pt whose prediction is the class index held in ``sTos``."""
    n_f, n_c = len(FEATURES), len(classes)
    model = build_model(n_f, n_c, hidden=[], dropout=0.0, seed=0)
    j = FEATURES.index(KEY_FEATURE)
    z = np.log1p(np.arange(n_c, dtype=np.float64))  # the scaler applies signed log1p
    w = np.zeros((n_c, n_f), dtype=np.float32)
    w[:, j] = 2 * sharpness * z
    b = (-sharpness * z**2).astype(np.float32)
    with torch.no_grad():
        model.net[0].weight.copy_(torch.from_numpy(w))
        model.net[0].bias.copy_(torch.from_numpy(b))
    scaler = Scaler(np.zeros(n_f, np.float32), np.ones(n_f, np.float32))
    classification = "binary" if n_c == 2 else "multi"
    meta = {"hidden": [], "dropout": 0.0}
    Detector(model, list(FEATURES), list(classes), classification, scaler, meta).save(path)
    return path


def random_model(path: Path, seed: int = 0) -> Path:
    """A model with random weights and a scaler fitted on random data (for benchmarks)."""
    rng = np.random.default_rng(seed)
    model = build_model(len(FEATURES), len(CLASSES), hidden=[64, 32], dropout=0.1, seed=seed)
    scaler = Scaler.fit(rng.lognormal(3, 2, size=(2000, len(FEATURES))).astype(np.float32))
    meta = {"hidden": [64, 32], "dropout": 0.1}
    Detector(model, list(FEATURES), list(CLASSES), "multi", scaler, meta).save(path)
    return path


@dataclass(frozen=True)
class FlowSpec:
    """``n`` flows of class index ``cls`` between two endpoints starting at ``start``."""

    cls: int
    src: str | None = "10.0.0.5"
    dst: str | None = "10.0.0.9"
    dport: int | None = 502
    proto: int | str | None = 6
    start: float | None = T0
    n: int = 1
    sport: int | None = None
    duration: float = 0.5


def make_flows(specs: Iterable[FlowSpec], seed: int = 0) -> pl.DataFrame:
    """A WUSTL-schema table (49 columns) with the given flows; other features random."""
    specs = list(specs)
    rng = np.random.default_rng(seed)
    rows: dict[str, list[Any]] = {c: [] for c in WUSTL_COLUMNS}
    for s in specs:
        for i in range(s.n):
            start = None if s.start is None else s.start + i * 0.01
            rows["StartTime"].append(start)
            rows["LastTime"].append(None if start is None else start + s.duration)
            rows["SrcAddr"].append(s.src)
            rows["DstAddr"].append(s.dst)
            rows["Sport"].append(s.sport if s.sport is not None else 40000 + i % 1000)
            rows["Dport"].append(s.dport)
            rows["Proto"].append(s.proto)
            rows["sTos"].append(float(s.cls))
            rows["Traffic"].append(CLASSES[s.cls])
            rows["Target"].append(int(s.cls != 0))
    n = len(rows["sTos"])
    for c in WUSTL_COLUMNS:
        if not rows[c] and n:
            rows[c] = rng.integers(0, 1000, size=n).astype(float).tolist()
    schema = {c: pl.Float64 for c in WUSTL_COLUMNS}
    schema.update(SrcAddr=pl.String, DstAddr=pl.String, Traffic=pl.String, Target=pl.Int64)
    schema["Proto"] = pl.String if any(isinstance(s.proto, str) for s in specs) else pl.Float64
    return pl.DataFrame(rows, schema=schema)


def write_csv(df: pl.DataFrame, path: Path) -> Path:
    df.write_csv(path)
    return path


def window_of(t: float, w: int = 60) -> int:
    return int(math.floor(t / w) * w)


def read_topic(
    address: str, topic: str, expected: int | None = None, timeout: float = 15.0
) -> list[tuple[str | None, bytes | None]]:
    """Every message on ``topic`` as (key, value), read without a consumer group.

    Stops once ``expected`` messages were read (then waits briefly for extras, which would
    be duplicates), or when nothing more arrives.
    """
    c = Consumer(
        {
            "bootstrap.servers": address,
            "group.id": "fedids-test-reader",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
            "log_level": 0,
        }
    )
    try:
        md = c.list_topics(topic, timeout=10)
        parts = sorted(md.topics[topic].partitions) if topic in md.topics else []
        if not parts:
            return []
        c.assign([TopicPartition(topic, p, 0) for p in parts])
        out: list[tuple[str | None, bytes | None]] = []
        eof: set[int] = set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = c.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == -191:  # _PARTITION_EOF
                    eof.add(msg.partition())
                    if len(eof) == len(parts) and (expected is None or len(out) >= expected):
                        break
                continue
            key = msg.key().decode() if msg.key() is not None else None
            out.append((key, msg.value()))
        return out
    finally:
        c.close()


class MemoryOutbox:
    """A NON-durable stand-in for :class:`fedids.alerts.outbox.Outbox` (same interface).

    It lives only as long as the object: a new "process" gets an empty one. Tests use it
    to show that the no-loss checks catch an outbox that does not survive a restart.
    """

    def __init__(self) -> None:
        from fedids.alerts.outbox import AddResult, PendingAlert

        self._rows: dict[int, PendingAlert] = {}
        self._seq = 0
        self._make = PendingAlert
        self._result = AddResult
        self.directory = None
        self.repair_report = None

    def add(self, alerts, meta=None):  # type: ignore[no-untyped-def]
        result = self._result()
        for a in alerts:
            for seq, row in list(self._rows.items()):
                if row.alert_id == a.alert_id:
                    del self._rows[seq]
            self._seq += 1
            self._rows[self._seq] = self._make(
                self._seq, a.alert_id, a.topic, a.payload, 0, a.digest, None
            )
            result.new.append(a.alert_id)
        return result

    def mark_sent(self, seqs):  # type: ignore[no-untyped-def]
        pass

    def unmark_sent(self, seqs):  # type: ignore[no-untyped-def]
        pass

    def mark_delivered(self, seqs, how="ack"):  # type: ignore[no-untyped-def]
        for s in seqs:
            self._rows.pop(s, None)

    def record_failures(self, failures):  # type: ignore[no-untyped-def]
        pass

    def in_doubt(self):  # type: ignore[no-untyped-def]
        return []

    def in_doubt_keys(self):  # type: ignore[no-untyped-def]
        return iter(())

    def iter_pending(self, after_seq: int = 0, chunk: int = 1000):  # type: ignore[no-untyped-def]
        return iter([r for s, r in sorted(self._rows.items()) if s > after_seq])

    def pending_for(self, alert_ids):  # type: ignore[no-untyped-def]
        ids = set(alert_ids)
        return [r for _, r in sorted(self._rows.items()) if r.alert_id in ids]

    def ids(self) -> set[str]:
        return {r.alert_id for r in self._rows.values()}

    def count(self) -> int:
        return len(self._rows)

    def try_lock(self) -> bool:
        return True

    def close(self) -> None:
        pass
