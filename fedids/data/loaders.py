"""Labelled datasets as numeric feature tables (preflight checks, alert input).

Dataset loaders (:func:`load_dataset`) build on :mod:`fedids.data.reader` and return
:class:`LabelledFlows`: features as a float32 table, labels as indices into a *global* class
list (benign class first), and a ``source`` text saying where the records came from (and
whether they are synthetic). The v2 path keeps text: :mod:`fedids.data.raw`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from fedids.data import synth
from fedids.data.reader import (  # noqa: F401  (re-exported: callers import them from here)
    SAMPLE_ROWS,
    DataError,
    NonNumericColumnError,
    _clean,
    _collect,
    _existing_file,
    _read_header,
    _scan,
    read_flow_table,
    read_header,
)
from fedids.data.schema import (
    WUSTL_CLASSES,
    WUSTL_COLUMNS,
    WUSTL_FEATURES,
    WUSTL_LABEL_COLUMN,
    WUSTL_TARGET_COLUMN,
)

log = logging.getLogger(__name__)

#: Dataset schemas :func:`load_dataset` knows.
SCHEMAS = ("wustl", "csv")

#: What the ``synthetic`` dataset generates when its config gives no rows/seed.
DEFAULT_SYNTHETIC_ROWS = 300_000
DEFAULT_SYNTHETIC_SEED = 7

#: IANA numbers for protocol names, for files whose ``Proto`` column holds names.
PROTOCOL_NUMBERS = {"icmp": 1, "igmp": 2, "tcp": 6, "udp": 17, "ipv6-icmp": 58, "sctp": 132}


# --- labelled datasets -----------------------------------------------------------------


@dataclass
class LabelledFlows:
    """A whole dataset: features, labels as indices into ``classes`` (benign first)."""

    features: pl.DataFrame  # float32 columns, in ``feature_names`` order
    labels: np.ndarray  # int64 indices into ``classes``
    classes: list[str]
    source: str
    synthetic: bool

    @property
    def feature_names(self) -> list[str]:
        return list(self.features.columns)

    def __len__(self) -> int:
        return len(self.labels)


def encode_labels(
    values: pl.Series, classes: Sequence[str], path: Path | str, column: str
) -> np.ndarray:
    """Label text -> class indices; unknown or empty labels are an error naming them."""
    missing = values.null_count()
    if missing:
        raise DataError(f"{path}: label column {column!r} is empty in {missing} row(s)")
    known = set(classes)
    counts = values.value_counts(sort=True)
    unknown = [(v, n) for v, n in counts.iter_rows() if v not in known]
    if unknown:
        listed = ", ".join(f"{v!r} ({n} rows)" for v, n in unknown[:10])
        raise DataError(
            f"{path}: unknown value(s) in label column {column!r}: {listed}; "
            f"expected one of {list(classes)}"
        )
    mapping = {c: i for i, c in enumerate(classes)}
    return values.replace_strict(mapping, return_dtype=pl.Int64).to_numpy()


def _protocol_numbers(values: pl.Series, path: Path) -> pl.Series:
    """``Proto`` as IANA numbers, whether the file writes numbers or names (tcp, udp...)."""
    cleaned = values.str.strip_chars().str.to_lowercase()
    numbers = cleaned.replace({k: str(v) for k, v in PROTOCOL_NUMBERS.items()}).cast(
        pl.Float32, strict=False
    )
    bad = cleaned.filter(numbers.is_null() & cleaned.is_not_null()).unique().sort()
    if len(bad):
        raise DataError(
            f"{path}: column 'Proto' has unknown protocol name(s): {bad.head(10).to_list()} "
            f"(numbers and {sorted(PROTOCOL_NUMBERS)} are understood)"
        )
    return numbers.fill_null(0).alias(values.name)


def load_wustl_file(path: str | Path) -> LabelledFlows:
    """A WUSTL-IIoT-2021 CSV: all 49 columns must be present; extra columns are ignored.

    ``Traffic`` gives the class; ``Target`` is only checked against it (a mismatch is
    logged, ``Traffic`` wins).
    """
    path = _existing_file(path)
    names = _read_header(path).names
    missing = [c for c in WUSTL_COLUMNS if c not in names]
    if missing:
        raise DataError(
            f"{path} is not a WUSTL-IIoT-2021 flow table: missing column(s) "
            f"{', '.join(missing)} (the file must have all 49 columns of the dataset)"
        )
    wanted = [*WUSTL_FEATURES, WUSTL_LABEL_COLUMN, WUSTL_TARGET_COLUMN]
    df = read_flow_table(
        path, columns=wanted, text_columns=[WUSTL_LABEL_COLUMN, "Proto"], float_dtype=pl.Float32
    )
    df = df.with_columns(_protocol_numbers(df["Proto"], path))
    labels = encode_labels(df[WUSTL_LABEL_COLUMN], WUSTL_CLASSES, path, WUSTL_LABEL_COLUMN)
    target = df[WUSTL_TARGET_COLUMN].to_numpy()
    mismatched = int(np.sum((labels > 0) != (target != 0)))
    if mismatched:
        log.warning(
            "%s: %d row(s) have a Target that disagrees with Traffic; Traffic is used",
            path,
            mismatched,
        )
    synthetic = _file_looks_synthetic(path)
    kind = "SYNTHETIC WUSTL-IIoT-2021-schema flows" if synthetic else "WUSTL-IIoT-2021 flows"
    return LabelledFlows(
        df.select(WUSTL_FEATURES), labels, list(WUSTL_CLASSES), f"{kind} from {path}", synthetic
    )


def _file_looks_synthetic(path: Path, rows: int = 1000) -> bool:
    """Whether the first rows' addresses are all in the generator's RFC 5737 ranges."""
    header = _read_header(path)
    sample = _collect(
        _scan(path, header).select([_clean("SrcAddr"), _clean("DstAddr")]).head(rows), path
    )
    return synth.looks_synthetic(
        v for c in ("SrcAddr", "DstAddr") for v in sample[c].drop_nulls().to_list()
    )


def load_csv_file(
    path: str | Path,
    *,
    label_column: str,
    drop_columns: Sequence[str] = (),
    normal_label: Any = "normal",
    classes: Sequence[Any] | None = None,
) -> LabelledFlows:
    """Any labelled flow CSV: every column except the label and ``drop_columns`` is a feature.

    ``classes`` (benign class first) fixes the class list. Without it, the list is
    ``normal_label`` followed by the other labels found in *this* file, sorted, which is
    fine for one file but lets devices disagree in a federation: give ``classes`` there.
    """
    path = _existing_file(path)
    names = _read_header(path).names
    label_column = str(label_column)
    if label_column not in names:
        raise DataError(
            f"{path}: label column {label_column!r} not found (columns: {', '.join(names)})"
        )
    drop = [str(c) for c in drop_columns]
    absent = [c for c in drop if c not in names]
    if absent:
        log.warning("%s: drop_columns not in the file (ignored): %s", path, ", ".join(absent))
    features = [c for c in names if c != label_column and c not in drop]
    if not features:
        raise DataError(f"{path}: no feature columns left after dropping {drop}")
    try:
        df = read_flow_table(
            path,
            columns=[*features, label_column],
            text_columns=[label_column],
            float_dtype=pl.Float32,
        )
    except NonNumericColumnError as exc:
        raise DataError(
            f"{exc}. Features must be numbers: if {exc.column!r} is not a feature (an address, "
            f"an id, a timestamp text), add it to dataset.drop_columns"
        ) from exc
    normal = str(normal_label)
    if classes is not None:
        class_list = [str(c) for c in classes]
        if len(set(class_list)) != len(class_list):
            raise DataError(f"dataset.classes lists a class twice: {class_list}")
        if not class_list or class_list[0] != normal:
            raise DataError(
                f"dataset.classes must start with normal_label {normal!r}, got {class_list}"
            )
    else:
        found = sorted(set(df[label_column].drop_nulls().to_list()) - {normal})
        class_list = [normal, *found]
        log.info(
            "%s: classes taken from the file: %s (set dataset.classes so that every device "
            "of a federation uses the same list)",
            path,
            class_list,
        )
    labels = encode_labels(df[label_column], class_list, path, label_column)
    if len(labels) and not (labels == 0).any():
        log.warning(
            "%s: normal_label %r never occurs in column %r, so every record is an attack; "
            "check dataset.normal_label (labels are compared as text)",
            path,
            normal,
            label_column,
        )
    return LabelledFlows(
        df.select(features), labels, class_list, f"labelled flow CSV {path}", False
    )


def load_synthetic(rows: int, seed: int) -> LabelledFlows:
    """Freshly generated SYNTHETIC records (see :mod:`fedids.data.synth`)."""
    df = synth.generate(rows, seed)
    features = df.select(pl.col(WUSTL_FEATURES).cast(pl.Float32))
    labels = encode_labels(df[WUSTL_LABEL_COLUMN], WUSTL_CLASSES, "<generated>", "Traffic")
    source = (
        f"SYNTHETIC flows in the WUSTL-IIoT-2021 schema (generated, rows={rows}, seed={seed}; "
        "not real traffic)"
    )
    return LabelledFlows(features, labels, list(WUSTL_CLASSES), source, True)


def dataset_schema(dataset: Mapping[str, Any]) -> str:
    """``dataset.schema``, or what the dataset's name implies."""
    schema = dataset.get("schema")
    if schema is None:
        schema = "wustl" if dataset.get("name") in ("wustl", "synthetic") else "csv"
    schema = str(schema)
    if schema not in SCHEMAS:
        raise DataError(f"dataset.schema must be one of {SCHEMAS}, got {schema!r}")
    return schema


def load_dataset(dataset: Mapping[str, Any], data_path: str | Path | None = None) -> LabelledFlows:
    """The records a ``cfg.dataset`` describes.

    The file is ``data_path`` when given (a device's own file), else ``dataset.path``. With
    no file, the ``synthetic`` dataset generates ``dataset.rows`` records from
    ``dataset.seed``; any other dataset needs a path.
    """
    schema = dataset_schema(dataset)
    path = data_path if data_path not in (None, "") else dataset.get("path")
    if path in (None, ""):
        if dataset.get("name") == "synthetic":
            rows = dataset.get("rows") or DEFAULT_SYNTHETIC_ROWS
            seed = dataset.get("seed")
            return load_synthetic(int(rows), DEFAULT_SYNTHETIC_SEED if seed is None else int(seed))
        raise DataError(
            f"dataset {dataset.get('name')!r} needs a file: set dataset.path "
            "(or the device's node-config data-path)"
        )
    if schema == "wustl":
        return load_wustl_file(path)
    if dataset.get("label_column") in (None, ""):
        raise DataError(f"dataset {dataset.get('name')!r} needs dataset.label_column")
    return load_csv_file(
        path,
        label_column=dataset["label_column"],
        drop_columns=list(dataset.get("drop_columns") or []),
        normal_label=dataset.get("normal_label", "normal"),
        classes=None if dataset.get("classes") is None else list(dataset["classes"]),
    )
