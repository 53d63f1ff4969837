"""A device's training data: load the dataset, take this device's part, split, encode.

What devices call:
:func:`load_device_table` (raw records, text kept, and the input layout), then per stats
pass :func:`local_summary` (integer summaries the federation sums), then
:func:`build_encoder` from the totals (the same encoder on every device). See
:mod:`fedids.data.spec`, :mod:`fedids.data.stats`, :mod:`fedids.data.encoder`.

Every device derives the same partitioning independently (:mod:`fedids.data.partition`).
"""

from __future__ import annotations

from fedids.data.encoder import Encoder, EncoderError, build_encoder
from fedids.data.loaders import DataError
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
    "DeviceTable",
    "Encoder",
    "EncoderError",
    "FeatureSpec",
    "Split",
    "SpecError",
    "StatsError",
    "build_encoder",
    "infer_spec",
    "load_device_table",
    "local_summary",
    "pooled_totals",
    "stats_passes",
    "summary_header",
    "summary_lengths",
    "train_val_split",
]
