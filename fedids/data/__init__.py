"""A device's training data: load the dataset, take this device's part, split, encode.

v2 interface (DESIGN.md section 3), what devices call now:
:func:`load_device_table` (raw records, text kept, and the input layout), then per stats
pass :func:`local_summary` (integer summaries the federation sums), then
:func:`build_encoder` from the totals (the same encoder on every device). See
:mod:`fedids.data.spec`, :mod:`fedids.data.stats`, :mod:`fedids.data.encoder`.

Pre-v2 (kept until the client switches): :func:`load_device_data`. It is deterministic: the same
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

from fedids.data.encoder import Encoder, EncoderError, build_encoder
from fedids.data.features import Scaler
from fedids.data.loaders import DataError, LabelledFlows, load_dataset
from fedids.data.partition import partition_indices
from fedids.data.schema import BINARY_CLASSES, CLASSIFICATIONS
from fedids.data.spec import FeatureSpec, SpecError, infer_spec
from fedids.data.stats import (
    StatsError,
    local_summary,
    pooled_totals,
    stats_passes,
    summary_header,
    summary_lengths,
)
from fedids.data.table import DeviceTable, Split, load_device_table, train_val_split

__all__ = [
    "DataError",
    "DeviceData",
    "DeviceTable",
    "Encoder",
    "EncoderError",
    "FeatureSpec",
    "Split",
    "SpecError",
    "StatsError",
    "build_encoder",
    "infer_spec",
    "load_device_data",
    "load_device_table",
    "local_summary",
    "pooled_totals",
    "stats_passes",
    "summary_header",
    "summary_lengths",
    "train_val_split",
]


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
