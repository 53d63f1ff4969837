"""The device's data as the protocol needs it: raw table, statistics summaries, encoded arrays.

This module is the one seam between the device's protocol code and the data layer
(:mod:`fedids.data`): load this device's raw records once per process, summarize them for
the statistics phase, and turn them into model inputs with the federation's encoder (the
same on every device, because it is built from the same totals).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from fedids import data as fdata
from fedids.data import DeviceTable, Encoder
from fedids.device.policy import DevicePolicy
from fedids.device.state import Setup
from fedids.model import Detector, model_for

__all__ = ["DeviceTable", "Encoded", "load_table"]


@dataclass(frozen=True)
class Encoded:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray


@lru_cache(maxsize=4)
def _load(key: str) -> DeviceTable:
    return fdata.load_device_table(**json.loads(key))


def load_table(cfg: dict[str, Any], policy: DevicePolicy) -> DeviceTable:
    """This device's raw records (cached per process: simulation reuses ClientApp processes)."""
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


def _encoding(cfg: dict[str, Any]) -> dict[str, Any] | None:
    return cfg.get("encoding")


def stats_passes(cfg: dict[str, Any]) -> int:
    return int(fdata.stats_passes(_encoding(cfg)))


def spec_digest(table: DeviceTable) -> str:
    return str(table.spec.digest())


def spec_kinds(table: DeviceTable) -> str:
    """``column=kind,...``: what the server shows when devices' layouts differ (names and
    kinds only, no values)."""
    return ",".join(f"{c.name}={c.kind}" for c in table.spec.columns)


def summary_length(table: DeviceTable, cfg: dict[str, Any], stats_pass: int) -> int:
    return int(fdata.summary_lengths(table.spec, _encoding(cfg))[stats_pass])


def local_summary(
    table: DeviceTable, cfg: dict[str, Any], stats_pass: int, earlier: list[np.ndarray]
) -> np.ndarray:
    return fdata.local_summary(table.spec, _encoding(cfg), table.train, stats_pass, earlier)


def setup_from_totals(table: DeviceTable, cfg: dict[str, Any], totals: list[np.ndarray]) -> Setup:
    encoder = fdata.build_encoder(table.spec, _encoding(cfg), totals)
    n_total, class_counts = fdata.summary_header(totals[0], table.spec)
    return Setup(
        encoder=encoder.to_dict(),
        n_total=int(n_total),
        class_counts=[int(c) for c in class_counts],
        spec_digest=spec_digest(table),
    )


_ENCODERS: OrderedDict[str, Encoder] = OrderedDict()


def encoder_of(setup: Setup) -> Encoder:
    """The encoder of ``setup`` (rebuilt from its dict once per process)."""
    key = json.dumps(setup.encoder, sort_keys=True)
    enc = _ENCODERS.get(key)
    if enc is None:
        enc = Encoder.from_dict(setup.encoder)
        _ENCODERS[key] = enc
        while len(_ENCODERS) > 4:
            _ENCODERS.popitem(last=False)
    return enc


def encode(table: DeviceTable, setup: Setup, cfg: dict[str, Any]) -> Encoded:
    enc = encoder_of(setup)
    x_train, y_train = table.train.arrays(enc)
    x_val, y_val = table.val.arrays(enc)
    return Encoded(x_train, y_train, x_val, y_val)


def build(table: DeviceTable, setup: Setup, cfg: dict[str, Any]) -> Any:
    """The configured model for the federation's input layout (same seed, same weights)."""
    return model_for(encoder_of(setup), cfg["model"], int(cfg["seed"]))


def make_detector(
    model: Any, table: DeviceTable, setup: Setup, cfg: dict[str, Any], meta: dict[str, Any]
) -> Detector:
    return Detector.from_encoder(model, encoder_of(setup), cfg["classification"]["name"], meta)
