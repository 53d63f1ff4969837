"""One device's raw records: load, take this device's part, split (text kept, nothing fitted).

:func:`load_device_table` is what a device calls before the statistics passes: it returns
the device's train/validation records *as read* (the encoder is built later, from the
federation's totals) plus the input layout (:class:`~fedids.data.spec.FeatureSpec`). It is
deterministic: the same arguments give the same rows, and every simulated device derives
the same partitioning independently (:mod:`fedids.data.partition`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from fedids.data.loaders import DataError
from fedids.data.partition import PartitionError, partition_indices
from fedids.data.raw import RawFlows, load_raw_dataset
from fedids.data.schema import BINARY_CLASSES, CLASSIFICATIONS
from fedids.data.spec import FeatureSpec, SpecError, infer_spec


def train_val_split(
    labels: np.ndarray, val_fraction: float, seed: int, partition_id: int
) -> tuple[np.ndarray, np.ndarray]:
    """Positions (into ``labels``) of the train and validation records, stratified by class.

    Each class sends ``round(n * val_fraction)`` records to validation, but at least one
    and never all of them when it has two or more records (a rare attack class stays
    represented on both sides); a class with a single record trains. Deterministic in
    ``(seed, partition_id)``; the train positions are shuffled.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction}")
    rng = np.random.default_rng((seed, partition_id, 21))
    train: list[np.ndarray] = []
    val: list[np.ndarray] = []
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        n_val = int(round(len(idx) * val_fraction))
        if val_fraction > 0 and len(idx) >= 2:
            n_val = min(max(n_val, 1), len(idx) - 1)
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    tr = rng.permutation(np.concatenate(train)) if train else np.zeros(0, np.int64)
    va = np.sort(np.concatenate(val)) if val else np.zeros(0, np.int64)
    return tr.astype(np.int64), va.astype(np.int64)


@dataclass
class Split:
    """Raw records (feature columns as read) and their class indices."""

    frame: pl.DataFrame
    labels: np.ndarray  # int64 indices into the table's class_names
    _parsed: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.labels)

    def parsed(self, spec: FeatureSpec, *, source: str = "") -> np.ndarray:
        """``spec.parse(frame)``, computed once per spec (summaries and training share it)."""
        key = spec.digest()
        if key not in self._parsed:
            self._parsed[key] = spec.parse(self.frame, source=source)
        return self._parsed[key]

    def arrays(self, encoder: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)`` for training/evaluation: float32 model inputs and int64 labels."""
        return encoder.encode(self.parsed(encoder.spec)), self.labels.astype(np.int64)


@dataclass
class DeviceTable:
    """One device's raw train/validation records and what they mean."""

    train: Split
    val: Split
    class_names: list[str]  # global class list, benign first
    spec: FeatureSpec  # input layout (same on every device of a federation)
    source: str  # where the records came from (says "SYNTHETIC" for generated data)
    synthetic: bool

    @property
    def feature_names(self) -> list[str]:
        return self.spec.names


def class_names_for(classification: str, raw: RawFlows) -> list[str]:
    if classification not in CLASSIFICATIONS:
        raise DataError(f"classification must be one of {CLASSIFICATIONS}, got {classification!r}")
    return list(BINARY_CLASSES) if classification == "binary" else list(raw.classes)


def dataset_spec(raw: RawFlows, dataset: Mapping[str, Any], classification: str) -> FeatureSpec:
    """The input layout of ``raw`` (whole dataset) for this classification."""
    try:
        return infer_spec(
            raw.frame,
            dataset,
            class_names_for(classification, raw),
            source=raw.path or raw.source,
            fixed=raw.fixed_kinds,
        )
    except SpecError as exc:
        raise DataError(str(exc)) from exc


def device_rows(
    raw: RawFlows,
    partition: Mapping[str, Any],
    partition_id: int,
    num_partitions: int,
    seed: int,
    whole_file: bool,
) -> tuple[np.ndarray, str]:
    """This device's record indices and a phrase saying which part they are."""
    if whole_file:
        return np.arange(len(raw), dtype=np.int64), (
            "this device's whole file (data-path), not partitioned"
        )
    try:
        rows = partition_indices(raw.labels, num_partitions, partition_id, partition, seed)
    except PartitionError as exc:
        raise DataError(f"{raw.path or raw.source}: {exc}") from exc
    where = (
        f"partition {partition_id} of {num_partitions} "
        f"({partition.get('name', 'iid')}, seed {seed})"
    )
    return rows, where


def load_device_table(
    dataset: Mapping[str, Any],
    classification: str,
    partition: Mapping[str, Any],
    partition_id: int,
    num_partitions: int,
    seed: int,
    val_fraction: float,
    data_path: str | Path | None = None,
) -> DeviceTable:
    """This device's raw records, split, with the input layout (nothing fitted yet).

    Arguments as :func:`fedids.data.load_device_data`. With ``data_path`` the device's own
    file is used whole (not partitioned) and the layout is inferred from that file: pin
    column kinds in ``conf/dataset`` when devices' files could disagree (the layout digest
    tells). The split uses the multi-class labels whatever ``classification`` is, so
    binary and multi runs see the same records.
    """
    if not 0.0 <= float(val_fraction) < 1.0:
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction}")
    raw = load_raw_dataset(dataset, data_path=data_path)
    spec = dataset_spec(raw, dataset, classification)
    whole = data_path not in (None, "")
    rows, where = device_rows(raw, partition, partition_id, num_partitions, seed, whole)
    name = raw.path or raw.source
    if len(rows) == 0:
        raise DataError(f"{name}: no records for this device ({where})")
    labels = raw.labels[rows]
    tr, va = train_val_split(labels, float(val_fraction), seed, int(partition_id))
    if len(tr) == 0:
        raise DataError(f"{name}: no training records for this device ({where})")
    y = (labels > 0).astype(np.int64) if classification == "binary" else labels.astype(np.int64)
    frame = raw.frame[rows]
    return DeviceTable(
        train=Split(frame[tr], y[tr]),
        val=Split(frame[va], y[va]),
        class_names=list(spec.class_names),
        spec=spec,
        source=f"{raw.source}; {where}",
        synthetic=raw.synthetic,
    )
