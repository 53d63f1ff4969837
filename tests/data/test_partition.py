"""Partitioning among devices: deterministic, disjoint, covering, never empty."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedids.data.partition import PartitionError, make_partitions, partition_indices

LABELS = np.repeat(np.arange(5), [9000, 700, 80, 12, 8])  # imbalanced like WUSTL
IID = {"name": "iid"}
DIRICHLET = {"name": "dirichlet", "alpha": 0.5, "min_records": 50}


def assert_disjoint_covering(parts: list[np.ndarray], n: int) -> None:
    joined = np.concatenate(parts)
    assert len(joined) == n and np.array_equal(np.sort(joined), np.arange(n))
    for p in parts:
        assert np.array_equal(p, np.sort(p))


@pytest.mark.parametrize("partition", [IID, DIRICHLET])
@pytest.mark.parametrize("k", [1, 2, 5])
def test_disjoint_covering_deterministic(partition: dict, k: int) -> None:
    parts = make_partitions(LABELS, k, partition, seed=3)
    assert len(parts) == k
    assert_disjoint_covering(parts, len(LABELS))
    again = make_partitions(LABELS, k, partition, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    for pid in range(k):  # what each device computes alone is its slice of the whole
        assert np.array_equal(partition_indices(LABELS, k, pid, partition, 3), parts[pid])


@pytest.mark.parametrize("partition", [IID, DIRICHLET])
def test_seed_changes_the_split(partition: dict) -> None:
    a = make_partitions(LABELS, 3, partition, seed=1)
    b = make_partitions(LABELS, 3, partition, seed=2)
    assert not all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_iid_sizes_are_even_and_classes_balanced() -> None:
    parts = make_partitions(LABELS, 4, IID, seed=0)
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1
    for p in parts:
        share = np.mean(LABELS[p] == 1)
        assert abs(share - 700 / len(LABELS)) < 0.02


def test_dirichlet_is_label_skewed_and_respects_min_records() -> None:
    parts = make_partitions(
        LABELS, 4, {"name": "dirichlet", "alpha": 0.1, "min_records": 100}, seed=0
    )
    assert min(len(p) for p in parts) >= 100
    shares = np.array([[np.mean(LABELS[p] == c) for c in range(2)] for p in parts])
    # with alpha 0.1 the DoS share differs a lot between devices (iid would be ~0.07 each)
    assert shares[:, 1].max() - shares[:, 1].min() > 0.1


def test_dirichlet_falls_back_to_moving_records(caplog: pytest.LogCaptureFixture) -> None:
    labels = np.repeat([0, 1], [30, 30])
    cfg = {"name": "dirichlet", "alpha": 0.01, "min_records": 14}
    with caplog.at_level(logging.WARNING, logger="fedids.data.partition"):
        parts = make_partitions(labels, 4, cfg, seed=0)
    assert_disjoint_covering(parts, 60)
    assert min(len(p) for p in parts) >= 14
    assert any("moving records" in r.getMessage() for r in caplog.records)
    again = make_partitions(labels, 4, cfg, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_partitions": 0, "partition_id": 0}, "num_partitions must be at least 1, got 0"),
        (
            {"num_partitions": 3, "partition_id": 3},
            r"partition_id 3 is out of range for 3 .*0\.\.2",
        ),
        ({"num_partitions": 3, "partition_id": -1}, "partition_id -1 is out of range"),
        ({"num_partitions": 2.5, "partition_id": 0}, "num_partitions must be an integer"),
        ({"num_partitions": 20000, "partition_id": 0}, "20000 partitions .* only 9800 record"),
    ],
)
def test_bad_arguments_name_the_values(kwargs: dict, match: str) -> None:
    with pytest.raises(PartitionError, match=match):
        partition_indices(LABELS, partition=IID, seed=0, **kwargs)


@pytest.mark.parametrize(
    ("partition", "match"),
    [
        ({"name": "shards"}, "partition.name must be one of"),
        ({"name": "dirichlet", "alpha": 0}, "alpha must be > 0, got 0"),
        ({"name": "dirichlet", "alpha": 0.5, "min_records": 5000}, "at least 5000 record"),
    ],
)
def test_bad_partition_settings(partition: dict, match: str) -> None:
    with pytest.raises(PartitionError, match=match):
        make_partitions(LABELS, 2, partition, seed=0)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 400),
    k=st.integers(1, 8),
    classes=st.integers(1, 5),
    alpha=st.floats(0.05, 5.0),
    min_records=st.integers(1, 10),
    seed=st.integers(0, 2**16),
    name=st.sampled_from(["iid", "dirichlet"]),
)
def test_property_every_record_in_exactly_one_nonempty_part(
    n: int, k: int, classes: int, alpha: float, min_records: int, seed: int, name: str
) -> None:
    labels = np.random.default_rng(seed).integers(0, classes, n)
    cfg = {"name": name, "alpha": alpha, "min_records": min_records}
    need = k * min_records  # min_records applies to iid too (each part gets n // k or more)
    if n < need:
        with pytest.raises(PartitionError):
            make_partitions(labels, k, cfg, seed)
        return
    parts = make_partitions(labels, k, cfg, seed)
    assert_disjoint_covering(parts, n)
    assert min(len(p) for p in parts) >= min_records
