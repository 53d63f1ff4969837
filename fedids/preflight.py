"""Checks the ServerApp runs BEFORE round 1, so a bad run ends in seconds with one line.

Without them, a missing file or a wrong label column is found by every device in turn,
after Ray has started, and reported as a device traceback (or not at all). Here the
server checks what it can read itself:

* the composed configuration beyond single keys (:func:`check_mode`: the Paillier codec
  must not overflow; :func:`check_federation`: the federation must be able to hold the
  ``min_*_clients`` it asks for, when the number of devices is known);
* the dataset, when the server can read it (simulation, or a path shared with devices):
  the file exists and is a file, its header has the label column, the labels are known
  classes and the benign label occurs, features parse, and every partition gets training
  records (:func:`check_dataset`). Reading goes through the data layer's own loader, so
  the server refuses exactly what devices would refuse.

Each failure raises :class:`PreflightError` with ONE line naming the key, file, column or
value. The checks import no torch and no flwr.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fedids.failures import FedidsError, collapse, explain

log = logging.getLogger("fedids.preflight")


class PreflightError(FedidsError, ValueError):
    """The run cannot work with this configuration or data (one line says why)."""


def in_simulation() -> bool:
    """Whether this process runs Flower's simulation engine (there, the server sees the data).

    ``flwr-simulation`` runs the ServerApp in a thread of the process that imported the
    simulation runtime; ``flwr-serverapp`` (deployment) never imports it.
    """
    return "flwr.simulation.run_simulation" in sys.modules


def check_mode(cfg: Mapping[str, Any]) -> None:
    """Paillier settings must give a codec that cannot overflow (H-crypto's own check)."""
    mode = cfg["mode"]
    if mode.get("name") != "paillier":
        return
    from fedids.crypto.codec import CodecConfigError, CodecParams

    try:
        CodecParams.from_config(mode)
    except (CodecConfigError, KeyError, TypeError, ValueError) as exc:
        raise PreflightError(f"mode=paillier settings: {explain(exc)[0]}") from exc


def check_federation(cfg: Mapping[str, Any], num_devices: int | None) -> None:
    """The federation's size against what the config demands (when the size is known)."""
    if num_devices is None:
        return
    fed = cfg["federation"]
    for key in ("min_available_clients", "min_fit_clients", "min_evaluate_clients"):
        if int(fed[key]) > num_devices:
            raise PreflightError(
                f"federation.{key}={fed[key]} but the federation has only {num_devices} "
                f"device(s): lower federation.{key} or run more devices (num-supernodes)"
            )
    mode = cfg["mode"]
    if mode.get("name") == "paillier" and num_devices > int(mode.get("max_clients", num_devices)):
        log.warning(
            "the federation has %d devices but mode.max_clients=%s: each round samples at most "
            "%s of them (raise mode.max_clients to use all)",
            num_devices,
            mode["max_clients"],
            mode["max_clients"],
        )


def partitions_to_check(cfg: Mapping[str, Any], num_devices: int | None) -> int:
    """How many partitions devices will cut: the federation's size, else the config's floor."""
    if num_devices is not None:
        return int(num_devices)
    fed = cfg["federation"]
    return max(int(fed["num_partitions"]), int(fed["min_available_clients"]))


def _dataset_file(cfg: Mapping[str, Any], simulation: bool) -> Path | None:
    """The file devices will read, if the server can (and must) check it."""
    ds = cfg["dataset"]
    raw = ds.get("path")
    if raw in (None, ""):
        return None
    path = Path(str(raw)).expanduser()
    if not path.exists():
        if simulation:
            raise PreflightError(f"dataset.path: file not found: {path}")
        log.info("dataset.path %s is not on the server: devices must have it", path)
        return None
    if not path.is_file():
        raise PreflightError(f"dataset.path: {path} is not a file")
    return path


def _check_header(ds: Mapping[str, Any], path: Path) -> None:
    from fedids.data.loaders import dataset_schema, read_header

    if dataset_schema(ds) != "csv":
        return  # the WUSTL loader checks all 49 columns and names the missing ones
    names = read_header(path)
    label = str(ds.get("label_column"))
    if label not in names:
        shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
        raise PreflightError(
            f"{path}: dataset.label_column {label!r} is not a column (columns: {shown})"
        )


def _check_labels(ds: Mapping[str, Any], path: Path, labels: np.ndarray, classes: list) -> None:
    if len(labels) == 0:
        raise PreflightError(f"{path}: no records (only a header)")
    counts = np.bincount(labels, minlength=len(classes))
    if counts[0] == 0:
        found = [c for c, n in zip(classes, counts, strict=True) if n][:6]
        raise PreflightError(
            f"{path}: the benign label {classes[0]!r} (dataset.normal_label) never occurs; "
            f"labels found: {found}"
        )
    absent = [c for c, n in zip(classes, counts, strict=True) if n == 0]
    if absent:
        log.warning("%s: class(es) %s of dataset.classes never occur in the file", path, absent)


def _check_partitions(cfg: Mapping[str, Any], path: Path, labels: np.ndarray, k: int) -> None:
    from fedids.data import train_val_split
    from fedids.data.partition import PartitionError, make_partitions

    part = cfg["partition"]
    seed = int(cfg["seed"])
    try:
        parts = make_partitions(labels, k, part, seed)
    except PartitionError as exc:
        raise PreflightError(
            f"{path}: {collapse(str(exc))} (partition={part.get('name')}, {k} devices)"
        ) from exc
    val_fraction = float(cfg["train"]["val_fraction"])
    for pid, rows in enumerate(parts):
        train, _ = train_val_split(labels[rows], val_fraction, seed, pid)
        if len(train) == 0:
            raise PreflightError(
                f"{path}: partition {pid} of {k} gets {len(rows)} record(s) and none to train "
                f"on (train.val_fraction={val_fraction})"
            )


def check_dataset(cfg: Mapping[str, Any], *, simulation: bool, num_partitions: int) -> None:
    """The dataset devices will read, checked the way devices read it."""
    ds = cfg["dataset"]
    if ds.get("path") in (None, "") and ds.get("name") == "synthetic":
        rows = ds.get("rows")
        if rows is not None and int(rows) < num_partitions:
            raise PreflightError(
                f"dataset.rows={rows} cannot give each of {num_partitions} devices a record"
            )
        return  # generated on each device; nothing to read here
    path = _dataset_file(cfg, simulation)
    if path is None:
        return
    from fedids.data.loaders import load_dataset

    _check_header(ds, path)
    try:
        flows = load_dataset(ds)
    except PreflightError:
        raise
    except Exception as exc:
        line, known = explain(exc)
        if not known:
            raise
        if str(path) not in line:
            line = f"{path}: {line}"
        raise PreflightError(line) from exc
    _check_labels(ds, path, flows.labels, list(flows.classes))
    _check_partitions(cfg, path, flows.labels, num_partitions)


def preflight(
    cfg: Mapping[str, Any], *, simulation: bool | None = None, num_devices: int | None = None
) -> None:
    """Every check above; raises :class:`PreflightError` (one line) at the first failure.

    ``simulation``: whether devices read the same files as the server (default: detected);
    ``num_devices``: the federation's size when the caller knows it (simulation).
    """
    simulation = in_simulation() if simulation is None else simulation
    check_mode(cfg)
    check_federation(cfg, num_devices)
    check_dataset(cfg, simulation=simulation, num_partitions=partitions_to_check(cfg, num_devices))
