"""Splitting one dataset among simulated devices.

Every device computes the *whole* split itself, from the same labels and seed, and keeps
its own part: no coordination is needed, and the parts are disjoint and cover the
dataset by construction. Labels are class indices into the dataset's global class list,
so a device missing a class still agrees with the others on what index 3 means.

* ``iid``: records shuffled and dealt evenly (sizes differ by at most one).
* ``dirichlet``: label skew, the usual way to simulate devices that see different
  attacks. Each class is shared among devices by proportions drawn from
  Dirichlet(alpha); small alpha means each class concentrates on few devices. Draws
  leaving a device under ``min_records`` are repeated (deterministically, from the same
  random stream); if that keeps failing, records are moved from the largest parts to the
  short ones, so no device is ever empty.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

PARTITIONERS = ("iid", "dirichlet")

#: Dirichlet draws tried before falling back to moving records.
MAX_DRAWS = 50


class PartitionError(ValueError):
    """A partitioning that cannot be done (the message names the values)."""


def _count(num_partitions: Any) -> int:
    if isinstance(num_partitions, bool) or not isinstance(num_partitions, int | np.integer):
        raise PartitionError(f"num_partitions must be an integer, got {num_partitions!r}")
    if num_partitions < 1:
        raise PartitionError(f"num_partitions must be at least 1, got {num_partitions}")
    return int(num_partitions)


def _check(n_records: int, num_partitions: int, min_records: int) -> None:
    if n_records < num_partitions * min_records:
        raise PartitionError(
            f"cannot give each of {num_partitions} partitions at least {min_records} "
            f"record(s): the dataset has only {n_records} record(s)"
        )


def _iid(n: int, k: int, rng: np.random.Generator) -> list[np.ndarray]:
    return [np.sort(p) for p in np.array_split(rng.permutation(n), k)]


def _dirichlet_draw(
    labels: np.ndarray, k: int, alpha: float, rng: np.random.Generator
) -> np.ndarray:
    """Partition number for every record (one Dirichlet draw per class)."""
    assignment = np.empty(len(labels), dtype=np.int64)
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        shares = rng.dirichlet(np.full(k, alpha))
        cuts = np.rint(np.cumsum(shares)[:-1] * len(idx)).astype(np.int64)
        for part, members in enumerate(np.split(idx, cuts)):
            assignment[members] = part
    return assignment


def _top_up(
    assignment: np.ndarray, k: int, min_records: int, rng: np.random.Generator
) -> np.ndarray:
    """Move random records from the largest parts to parts under ``min_records``."""
    assignment = assignment.copy()
    sizes = np.bincount(assignment, minlength=k)
    while sizes.min() < min_records:
        short, donor = int(np.argmin(sizes)), int(np.argmax(sizes))
        move = min(min_records - sizes[short], sizes[donor] - min_records)
        chosen = rng.choice(np.flatnonzero(assignment == donor), size=move, replace=False)
        assignment[chosen] = short
        sizes[short] += move
        sizes[donor] -= move
    return assignment


def _dirichlet(
    labels: np.ndarray, k: int, alpha: float, min_records: int, rng: np.random.Generator
) -> list[np.ndarray]:
    for _ in range(MAX_DRAWS):
        assignment = _dirichlet_draw(labels, k, alpha, rng)
        if np.bincount(assignment, minlength=k).min() >= min_records:
            break
    else:
        log.warning(
            "dirichlet(alpha=%s): no draw in %d gave every one of %d partitions %d record(s); "
            "moving records from the largest partitions",
            alpha,
            MAX_DRAWS,
            k,
            min_records,
        )
        assignment = _top_up(assignment, k, min_records, rng)
    return [np.flatnonzero(assignment == p) for p in range(k)]


def make_partitions(
    labels: np.ndarray, num_partitions: int, partition: Mapping[str, Any], seed: int
) -> list[np.ndarray]:
    """All partitions, as sorted arrays of record indices (disjoint, covering, none empty).

    ``partition`` is ``cfg.partition``: ``name`` (``iid`` or ``dirichlet``), ``alpha``
    (dirichlet) and ``min_records`` (records every part must get, default 1; iid parts
    hold ``n // num_partitions`` or one more, so it is only checked there).
    """
    labels = np.asarray(labels)
    name = str(partition.get("name", "iid"))
    if name not in PARTITIONERS:
        raise PartitionError(f"partition.name must be one of {PARTITIONERS}, got {name!r}")
    min_records = int(partition.get("min_records", 1) or 1)
    if min_records < 1:
        raise PartitionError(f"partition.min_records must be at least 1, got {min_records}")
    k = _count(num_partitions)
    _check(len(labels), k, min_records)
    if name == "iid":
        return _iid(len(labels), k, np.random.default_rng((seed, 11)))
    alpha = float(partition.get("alpha", 0.5))
    if not alpha > 0:
        raise PartitionError(f"partition.alpha must be > 0, got {alpha}")
    return _dirichlet(labels, k, alpha, min_records, np.random.default_rng((seed, 12)))


def partition_indices(
    labels: np.ndarray,
    num_partitions: int,
    partition_id: int,
    partition: Mapping[str, Any],
    seed: int,
) -> np.ndarray:
    """Record indices of partition ``partition_id`` (of ``num_partitions``)."""
    k = _count(num_partitions)
    if isinstance(partition_id, bool) or not isinstance(partition_id, int | np.integer):
        raise PartitionError(f"partition_id must be an integer, got {partition_id!r}")
    if not 0 <= partition_id < k:
        raise PartitionError(
            f"partition_id {partition_id} is out of range for {k} partition(s) (valid: 0..{k - 1})"
        )
    return make_partitions(labels, k, partition, seed)[int(partition_id)]
