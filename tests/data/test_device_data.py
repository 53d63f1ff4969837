"""load_device_data: load -> partition -> stratified split -> scaler on train only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import fedids.data as data_pkg
from fedids.data import DataError, DeviceData, load_device_data, train_val_split
from fedids.data.features import Scaler
from fedids.data.schema import WUSTL_CLASSES, WUSTL_FEATURES

SYNTH = {"name": "synthetic", "schema": "wustl", "path": None, "rows": 6000, "seed": 7}
IID = {"name": "iid"}


def load(**overrides: Any) -> DeviceData:
    args: dict[str, Any] = dict(
        dataset=SYNTH, classification="multi", partition=IID, partition_id=0,
        num_partitions=2, seed=42, val_fraction=0.2,
    )  # fmt: skip
    args.update(overrides)
    return load_device_data(**args)


def test_shapes_types_and_names() -> None:
    d = load()
    assert d.x_train.dtype == np.float32 and d.x_val.dtype == np.float32
    assert d.y_train.dtype == np.int64 and d.y_val.dtype == np.int64
    assert d.x_train.shape[1] == d.x_val.shape[1] == 41
    assert len(d.x_train) + len(d.x_val) == 3000
    assert abs(len(d.x_val) / 3000 - 0.2) < 0.01
    assert d.feature_names == WUSTL_FEATURES and d.class_names == WUSTL_CLASSES
    assert d.synthetic and "SYNTHETIC" in d.source and "partition 0 of 2" in d.source


def test_scaler_is_fitted_on_the_train_split_only(monkeypatch: pytest.MonkeyPatch) -> None:
    fitted: list[np.ndarray] = []
    real_fit = Scaler.fit.__func__  # type: ignore[attr-defined]

    def spy(cls: type[Scaler], x: np.ndarray) -> Scaler:
        fitted.append(np.array(x, copy=True))
        return real_fit(cls, x)

    monkeypatch.setattr(data_pkg.Scaler, "fit", classmethod(spy))
    d = load()
    assert len(fitted) == 1
    raw_train = fitted[0]
    assert raw_train.shape == d.x_train.shape  # not train + val
    np.testing.assert_allclose(d.scaler.transform(raw_train), d.x_train, atol=1e-5)
    assert np.allclose(d.scaler.mean, Scaler.fit(raw_train).mean)


def test_train_split_is_standardized_val_is_not_refitted() -> None:
    d = load()
    varying = d.x_train.std(axis=0) > 0
    assert np.allclose(d.x_train[:, varying].mean(axis=0), 0, atol=1e-3)
    assert np.allclose(d.x_train[:, varying].std(axis=0), 1, atol=1e-3)
    # validation uses the train statistics, so its means are near but not exactly 0
    assert np.abs(d.x_val[:, varying].mean(axis=0)).max() > 1e-3


def test_deterministic_and_partitions_differ() -> None:
    a, b, c = load(), load(), load(partition_id=1)
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_val, b.y_val)
    assert not np.array_equal(a.scaler.mean, c.scaler.mean)


def test_split_is_stratified() -> None:
    d = load(dataset={**SYNTH, "rows": 20000}, num_partitions=1)
    train_counts = np.bincount(d.y_train, minlength=5)
    val_counts = np.bincount(d.y_val, minlength=5)
    assert (val_counts >= 1).all() and (train_counts >= 1).all()  # even the rarest classes
    share = val_counts / (train_counts + val_counts)
    assert np.all(np.abs(share[:3] - 0.2) < 0.01)


def test_train_val_split_rules() -> None:
    labels = np.array([0] * 10 + [1] * 2 + [2])
    tr, va = train_val_split(labels, 0.2, seed=1, partition_id=0)
    assert sorted(np.concatenate([tr, va]).tolist()) == list(range(13))
    assert np.bincount(labels[va], minlength=3).tolist() == [2, 1, 0]
    tr0, va0 = train_val_split(labels, 0.0, seed=1, partition_id=0)
    assert len(va0) == 0 and len(tr0) == 13
    other = train_val_split(labels, 0.2, seed=1, partition_id=1)[1]
    again = train_val_split(labels, 0.2, seed=1, partition_id=0)[1]
    assert np.array_equal(va, again) and not np.array_equal(va, other)


def test_binary_classification() -> None:
    multi, binary = load(), load(classification="binary")
    assert binary.class_names == ["normal", "attack"]
    assert np.array_equal(binary.y_train, (multi.y_train > 0).astype(np.int64))
    assert np.array_equal(binary.x_train, multi.x_train)  # same records either way


def test_dirichlet_partition_keeps_the_global_class_list() -> None:
    part = {"name": "dirichlet", "alpha": 0.05, "min_records": 50}
    for pid in range(3):
        d = load(partition=part, partition_id=pid, num_partitions=3)
        assert d.class_names == WUSTL_CLASSES


def test_data_path_uses_the_whole_file(wustl_csv: Path) -> None:
    dataset = {"name": "wustl", "schema": "wustl", "path": "/elsewhere.csv"}
    d = load(dataset=dataset, data_path=str(wustl_csv), partition_id=5, num_partitions=2)
    assert len(d.x_train) + len(d.x_val) == 1500
    assert "not partitioned" in d.source and str(wustl_csv) in d.source


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"classification": "ternary"}, "classification must be one of"),
        ({"val_fraction": 1.0}, r"val_fraction must be in \[0, 1\), got 1.0"),
        ({"partition_id": 2}, "partition_id 2 is out of range for 2"),
        ({"num_partitions": 0}, "num_partitions must be at least 1"),
    ],
)
def test_bad_arguments(overrides: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        load(**overrides)


def test_error_type_is_exported() -> None:
    assert issubclass(DataError, ValueError)
