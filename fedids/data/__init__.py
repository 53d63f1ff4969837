"""A device's training data: load the dataset, take this device's part, split, scale.

:func:`load_device_data` is what a ClientApp calls. It is deterministic: the same
arguments always give the same arrays, and every device derives the same partitioning
independently (see :mod:`fedids.data.partition`). The scaler is fitted on the device's
own training split only, so nothing about validation records or other devices leaks into
training.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedids.data.features import Scaler
from fedids.data.loaders import DataError, LabelledFlows, load_dataset
from fedids.data.partition import partition_indices
from fedids.data.schema import BINARY_CLASSES, CLASSIFICATIONS

__all__ = ["DataError", "DeviceData", "load_device_data", "train_val_split"]


@dataclass
class DeviceData:
    """One device's scaled train/validation arrays and what they mean."""

    x_train: np.ndarray  # float32 (n_train, n_features), scaled
    y_train: np.ndarray  # int64 (n_train,), indices into class_names
    x_val: np.ndarray  # float32 (n_val, n_features), scaled with the train scaler
    y_val: np.ndarray  # int64 (n_val,)
    feature_names: list[str]
    class_names: list[str]  # global class list, benign first
    scaler: Scaler  # fitted on x_train's raw values only
    source: str  # where the records came from (says "SYNTHETIC" for generated data)
    synthetic: bool


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


def load_device_data(
    dataset: Mapping[str, Any],
    classification: str,
    partition: Mapping[str, Any],
    partition_id: int,
    num_partitions: int,
    seed: int,
    val_fraction: float,
    data_path: str | Path | None = None,
) -> DeviceData:
    """This device's data, ready for training.

    ``dataset`` and ``partition`` are ``cfg.dataset`` and ``cfg.partition``;
    ``classification`` is ``"multi"`` (one class per traffic type) or ``"binary"``
    (normal vs attack). With ``data_path`` (a device's own file in a deployment) that file
    is used whole: it is not partitioned, and ``partition``/``num_partitions`` are unused.
    Otherwise the dataset is split among ``num_partitions`` devices and partition
    ``partition_id`` is kept; the split uses the multi-class labels whatever
    ``classification`` is, so binary and multi runs see the same records.
    """
    if classification not in CLASSIFICATIONS:
        raise DataError(f"classification must be one of {CLASSIFICATIONS}, got {classification!r}")
    if not 0.0 <= float(val_fraction) < 1.0:
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction}")
    flows: LabelledFlows = load_dataset(dataset, data_path=data_path)
    if data_path not in (None, ""):
        rows = np.arange(len(flows), dtype=np.int64)
        where = "this device's whole file (data-path), not partitioned"
    else:
        rows = partition_indices(flows.labels, num_partitions, partition_id, partition, seed)
        where = (
            f"partition {partition_id} of {num_partitions} "
            f"({partition.get('name', 'iid')}, seed {seed})"
        )
    if len(rows) == 0:
        raise DataError(f"{flows.source}: no records for this device ({where})")
    labels = flows.labels[rows]
    tr, va = train_val_split(labels, float(val_fraction), seed, int(partition_id))
    if len(tr) == 0:
        raise DataError(f"{flows.source}: no training records for this device ({where})")
    x = flows.features[rows].to_numpy().astype(np.float32, copy=False)
    scaler = Scaler.fit(x[tr])
    if classification == "binary":
        y = (labels > 0).astype(np.int64)
        class_names = list(BINARY_CLASSES)
    else:
        y = labels.astype(np.int64)
        class_names = list(flows.classes)
    return DeviceData(
        x_train=scaler.transform(x[tr]),
        y_train=y[tr],
        x_val=scaler.transform(x[va]),
        y_val=y[va],
        feature_names=flows.feature_names,
        class_names=class_names,
        scaler=scaler,
        source=f"{flows.source}; {where}",
        synthetic=flows.synthetic,
    )
