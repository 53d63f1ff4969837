"""Datasets read with their text kept: the input of the v2 encoding (spec + statistics).

Unlike :func:`fedids.data.loaders.load_dataset` (numbers only), :func:`load_raw_dataset`
keeps text columns as text (``door_state = closed``, ``proto = tcp``, ``false  ``) so the
:class:`~fedids.data.spec.FeatureSpec` decides what each cell means, identically at
training and detection. Numeric-looking columns are read as float64 (the same type
detection reads them as, so both see the very same values).

Errors name the file, and the column and value when one is to blame.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from fedids.data import synth
from fedids.data.loaders import (
    DEFAULT_SYNTHETIC_ROWS,
    DEFAULT_SYNTHETIC_SEED,
    DataError,
    _existing_file,
    _file_looks_synthetic,
    _read_header,
    dataset_schema,
    read_flow_table,
)
from fedids.data.schema import (
    WUSTL_CLASSES,
    WUSTL_COLUMNS,
    WUSTL_FEATURES,
    WUSTL_LABEL_COLUMN,
    WUSTL_TARGET_COLUMN,
)
from fedids.data.spec import MISSING_MARKERS, Kind, numbers_from_text

log = logging.getLogger(__name__)

#: What the WUSTL schema fixes: Proto is a category (numbers or names, see spec.py).
WUSTL_KINDS: dict[str, Kind] = {"Proto": "categorical"}


@dataclass
class RawFlows:
    """A whole dataset, text kept: feature columns as read, labels as class indices."""

    frame: pl.DataFrame  # feature columns only (numbers float64, text as text)
    labels: np.ndarray  # int64 indices into ``classes`` (multi-class, benign first)
    classes: list[str]
    source: str
    synthetic: bool
    path: str = ""  # the file ("" when generated)
    fixed_kinds: dict[str, Kind] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)


def _labels(
    values: pl.Series,
    path: Path | str,
    column: str,
    normal: str,
    classes: Sequence[Any] | None,
) -> tuple[np.ndarray, list[str]]:
    """Label text -> indices; the class list benign first; errors list the labels found."""
    text = values.cast(pl.String).str.strip_chars()
    empty = int((text.is_null() | (text == "")).sum())
    if empty:
        raise DataError(f"{path}: label column {column!r} is empty in {empty} row(s)")
    counts = text.value_counts(sort=True)
    found = [str(v) for v in counts[counts.columns[0]].to_list()]
    if classes is not None:
        class_list = [str(c).strip() for c in classes]
        if len(set(class_list)) != len(class_list):
            raise DataError(f"dataset.classes lists a class twice: {class_list}")
        if not class_list or class_list[0] != normal:
            raise DataError(
                f"dataset.classes must start with normal_label {normal!r}, got {class_list}"
            )
        unknown = [v for v in found if v not in set(class_list)]
        if unknown:
            raise DataError(
                f"{path}: unknown value(s) in label column {column!r}: {unknown[:10]}; "
                f"dataset.classes is {class_list}"
            )
        if normal not in found:
            log.warning("%s: no %r (benign) records in this file", path, normal)
    else:
        if normal not in found:
            raise DataError(
                f"{path}: dataset.normal_label {normal!r} is not a value of label column "
                f"{column!r}; labels found: {sorted(found)} (labels are compared as text)"
            )
        class_list = [normal, *sorted(v for v in found if v != normal)]
    mapping = {c: i for i, c in enumerate(class_list)}
    return text.replace_strict(mapping, return_dtype=pl.Int64).to_numpy(), class_list


def _check_rows(frame: pl.DataFrame, path: Path | str) -> None:
    if frame.height == 0:
        raise DataError(f"{path}: no data rows (only a header)")


def _check_pinned_numeric(frame: pl.DataFrame, dataset: Mapping[str, Any], path: Path) -> None:
    """A column the config calls numeric must hold numbers: name the first that is not."""
    pinned = dataset.get("numeric_columns") or []
    for name in [str(c) for c in pinned]:
        if name not in frame.columns or frame.schema[name] != pl.String:
            continue
        s = frame[name].str.strip_chars()
        bad = s.is_not_null() & (s != "") & numbers_from_text(s).is_null()
        bad = bad & ~s.str.to_lowercase().is_in(list(MISSING_MARKERS))
        if bad.any():
            row = int(bad.arg_true()[0])
            raise DataError(
                f"{path}: column {name!r} is listed in dataset.numeric_columns but holds "
                f"{int(bad.sum())} value(s) that are not numbers (first in data row {row + 1}: "
                f"{s[row]!r}); remove it from numeric_columns to encode it as a category"
            )


def load_wustl_raw(path: str | Path) -> RawFlows:
    """A WUSTL-IIoT-2021 CSV (all 49 columns), Proto kept as text (numbers or names)."""
    path = _existing_file(path)
    names = _read_header(path).names
    missing = [c for c in WUSTL_COLUMNS if c not in names]
    if missing:
        raise DataError(
            f"{path} is not a WUSTL-IIoT-2021 flow table: missing column(s) "
            f"{', '.join(missing)} (the file must have all 49 columns of the dataset)"
        )
    wanted = [*WUSTL_FEATURES, WUSTL_LABEL_COLUMN, WUSTL_TARGET_COLUMN]
    df = read_flow_table(path, columns=wanted, text_columns=[WUSTL_LABEL_COLUMN, "Proto"])
    _check_rows(df, path)
    labels, classes = _labels(df[WUSTL_LABEL_COLUMN], path, WUSTL_LABEL_COLUMN, "normal",
                              WUSTL_CLASSES)  # fmt: skip
    target = df[WUSTL_TARGET_COLUMN].to_numpy()
    mismatched = int(np.sum((labels > 0) != (target != 0)))
    if mismatched:
        log.warning("%s: %d row(s) have a Target that disagrees with Traffic; Traffic is used",
                    path, mismatched)  # fmt: skip
    synthetic = _file_looks_synthetic(path)
    kind = "SYNTHETIC WUSTL-IIoT-2021-schema flows" if synthetic else "WUSTL-IIoT-2021 flows"
    return RawFlows(df.select(WUSTL_FEATURES), labels, classes, f"{kind} from {path}",
                    synthetic, str(path), dict(WUSTL_KINDS))  # fmt: skip


def load_csv_raw(
    path: str | Path, dataset: Mapping[str, Any], label_column: str | None = None
) -> RawFlows:
    """Any labelled CSV: every column but the label and ``dataset.drop_columns`` is a feature."""
    path = _existing_file(path)
    names = _read_header(path).names
    label_column = str(label_column if label_column is not None else dataset["label_column"])
    if label_column not in names:
        raise DataError(
            f"{path}: label column {label_column!r} not found (columns: {', '.join(names)})"
        )
    drop = [str(c) for c in (dataset.get("drop_columns") or [])]
    absent = [c for c in drop if c not in names]
    if absent:
        log.warning("%s: drop_columns not in the file (ignored): %s", path, ", ".join(absent))
    features = [c for c in names if c != label_column and c not in drop]
    if not features:
        raise DataError(f"{path}: no feature columns left after dropping {drop}")
    df = read_flow_table(path, columns=[*features, label_column], keep_text=[label_column])
    _check_rows(df, path)
    _check_pinned_numeric(df, dataset, path)
    normal = str(dataset.get("normal_label", "normal")).strip()
    classes = dataset.get("classes")
    labels, class_list = _labels(df[label_column], path, label_column, normal,
                                 None if classes is None else list(classes))  # fmt: skip
    return RawFlows(df.select(features), labels, class_list, f"labelled flow CSV {path}",
                    False, str(path))  # fmt: skip


def load_synthetic_raw(rows: int, seed: int) -> RawFlows:
    """Freshly generated SYNTHETIC records (see :mod:`fedids.data.synth`)."""
    df = synth.generate(rows, seed)
    labels, classes = _labels(df[WUSTL_LABEL_COLUMN], "<generated>", WUSTL_LABEL_COLUMN,
                              "normal", WUSTL_CLASSES)  # fmt: skip
    source = (
        f"SYNTHETIC flows in the WUSTL-IIoT-2021 schema (generated, rows={rows}, seed={seed}; "
        "not real traffic)"
    )
    frame = df.select(pl.col(WUSTL_FEATURES).cast(pl.Float64))
    return RawFlows(frame, labels, classes, source, True, "", dict(WUSTL_KINDS))


def load_raw_dataset(
    dataset: Mapping[str, Any], data_path: str | Path | None = None
) -> RawFlows:
    """The records ``cfg.dataset`` describes (``data_path``, a device's own file, wins)."""
    schema = dataset_schema(dataset)
    path = data_path if data_path not in (None, "") else dataset.get("path")
    if path in (None, ""):
        if dataset.get("name") == "synthetic":
            rows = int(dataset.get("rows") or DEFAULT_SYNTHETIC_ROWS)
            seed = dataset.get("seed")
            return load_synthetic_raw(rows, DEFAULT_SYNTHETIC_SEED if seed is None else int(seed))
        raise DataError(
            f"dataset {dataset.get('name')!r} needs a file: set dataset.path "
            "(or the device's node-config data-path)"
        )
    if schema == "wustl":
        return load_wustl_raw(path)
    if dataset.get("label_column") in (None, ""):
        raise DataError(f"dataset {dataset.get('name')!r} needs dataset.label_column")
    return load_csv_raw(path, dataset)
