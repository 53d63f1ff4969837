"""The device's data as the protocol needs it: raw table, statistics summaries, encoded arrays.

This module is the one seam between the device's protocol code and the data layer
(:mod:`fedids.data`): load this device's raw table once per process, summarize it for the
statistics phase, and turn it into model inputs with the federation's encoder.

INTERIM: until the encoding layer lands, the "encoder" is the device's own scaler and the
only statistics are the record and class counts (enough for the protocol: N and shares).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from fedids.data import DeviceData, load_device_data
from fedids.device.policy import DevicePolicy
from fedids.device.state import Setup
from fedids.model import Detector


@dataclass(frozen=True)
class Encoded:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray


@dataclass(frozen=True)
class DeviceTable:
    data: DeviceData

    @property
    def class_names(self) -> list[str]:
        return list(self.data.class_names)

    @property
    def n_train(self) -> int:
        return len(self.data.y_train)

    @property
    def n_val(self) -> int:
        return len(self.data.y_val)

    @property
    def source(self) -> str:
        return self.data.source

    @property
    def synthetic(self) -> bool:
        return self.data.synthetic


@lru_cache(maxsize=4)
def _load(key: str) -> DeviceTable:
    return DeviceTable(load_device_data(**json.loads(key)))


def load_table(cfg: dict[str, Any], policy: DevicePolicy) -> DeviceTable:
    """This device's records (cached per process: simulation reuses ClientApp processes)."""
    key = json.dumps(
        {
            "dataset": cfg["dataset"],
            "classification": cfg["classification"]["name"],
            "partition": cfg["partition"],
            "partition_id": policy.partition_id,
            "num_partitions": policy.num_partitions,
            "seed": cfg["seed"],
            "val_fraction": cfg["train"]["val_fraction"],
            "data_path": policy.data_path,
        },
        sort_keys=True,
    )
    return _load(key)


def stats_passes(cfg: dict[str, Any]) -> int:
    return 1


def spec_digest(table: DeviceTable) -> str:
    return "interim:" + ",".join(table.data.feature_names)


def local_summary(
    table: DeviceTable, cfg: dict[str, Any], stats_pass: int, earlier: list[np.ndarray]
) -> np.ndarray:
    counts = np.bincount(table.data.y_train, minlength=len(table.class_names))
    return np.concatenate([[table.n_train], counts]).astype(np.int64)


def setup_from_totals(table: DeviceTable, cfg: dict[str, Any], totals: list[np.ndarray]) -> Setup:
    first = np.asarray(totals[0], dtype=np.int64)
    return Setup(
        encoder={"interim_scaler": table.data.scaler.to_dict()},
        n_total=int(first[0]),
        class_counts=[int(c) for c in first[1:]],
        spec_digest=spec_digest(table),
    )


def encode(table: DeviceTable, setup: Setup, cfg: dict[str, Any]) -> Encoded:
    d = table.data
    return Encoded(d.x_train, d.y_train, d.x_val, d.y_val)


def n_inputs(table: DeviceTable, setup: Setup) -> int:
    return table.data.x_train.shape[1]


def make_detector(
    model: Any, table: DeviceTable, setup: Setup, cfg: dict[str, Any], meta: dict[str, Any]
) -> Detector:
    return Detector(
        model=model,
        feature_names=table.data.feature_names,
        class_names=table.class_names,
        classification=cfg["classification"]["name"],
        scaler=table.data.scaler,
        meta=meta,
    )
