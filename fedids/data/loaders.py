"""Reading flow tables from CSV files and turning datasets into labelled feature tables.

Flow exports are messy in predictable ways, and the real WUSTL-IIoT-2021 file is about
400 MB, so :func:`read_flow_table` is both tolerant and frugal:

* a UTF-8 byte-order mark and spaces around header names are removed;
* blank lines (and rows empty in every column read) are skipped;
* every cell is read as text, trimmed, and numeric columns are then cast to floats, so
  numbers written as quoted text (``"1.5"``, `` 2 ``) and hexadecimal values (``0x1f``,
  as Argus writes some ports) are accepted; a cell that is not a number raises
  :class:`NonNumericColumnError` naming the file, column, line and bad value;
* in numeric columns, NaN, +/-inf and empty cells are replaced by 0 (a flow meter leaves a
  measurement empty or infinite when it is undefined, e.g. a rate over a zero duration,
  and 0 is what the same meter writes for "no such activity"); the number replaced is
  logged per column as a warning, so a data problem never passes silently;
* columns not asked for are never parsed (the scan is lazy and projected), and the cast
  happens inside polars' streaming engine, so the text of the file is not held in memory
  next to its numbers.

Dataset loaders (:func:`load_dataset`) build on it and return :class:`LabelledFlows`:
features as a float32 table, labels as indices into a *global* class list (benign class
first), and a ``source`` text saying where the records came from (and whether they are
synthetic).
"""

from __future__ import annotations

import csv
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from fedids.data import synth
from fedids.data.schema import (
    WUSTL_CLASSES,
    WUSTL_COLUMNS,
    WUSTL_FEATURES,
    WUSTL_LABEL_COLUMN,
    WUSTL_TARGET_COLUMN,
)

log = logging.getLogger(__name__)

#: Rows looked at to guess which columns are numeric when the caller does not say.
SAMPLE_ROWS = 10_000

#: Dataset schemas :func:`load_dataset` knows.
SCHEMAS = ("wustl", "csv")

#: What the ``synthetic`` dataset generates when its config gives no rows/seed.
DEFAULT_SYNTHETIC_ROWS = 300_000
DEFAULT_SYNTHETIC_SEED = 7

#: IANA numbers for protocol names, for files whose ``Proto`` column holds names.
PROTOCOL_NUMBERS = {"icmp": 1, "igmp": 2, "tcp": 6, "udp": 17, "ipv6-icmp": 58, "sctp": 132}


class DataError(ValueError):
    """A data file or dataset setting that cannot be used (the message says which and why)."""


class NonNumericColumnError(DataError):
    """A column that must hold numbers holds text."""

    def __init__(self, path: Path, column: str, sample: str, count: int, line: int):
        self.path = path
        self.column = column
        self.sample = sample
        self.count = count
        self.line = line
        super().__init__(
            f"{path}: column {column!r} must be numeric but {count} value(s) are not numbers "
            f"(first on line {line}: {sample!r})"
        )


@dataclass(frozen=True)
class _Header:
    names: list[str]  # cleaned, in file order
    line: int  # 1-based line number of the header


def _read_header(path: Path) -> _Header:
    """The header line, parsed and cleaned (BOM, surrounding spaces, empty names)."""
    try:
        with path.open("rb") as fh:
            for number, raw in enumerate(fh, start=1):
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8").strip()
                if text:
                    break
            else:
                raise DataError(f"{path}: file is empty (no header line)")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: header is not UTF-8 text ({exc.reason})") from exc
    names = [n.replace("\ufeff", "").strip() for n in next(csv.reader([text]))]
    if len(names) == 1 and (";" in text or "\t" in text):
        raise DataError(
            f"{path}: the header is a single column ({text[:60]!r}...): flow tables must be "
            "comma-separated"
        )
    names = [n or f"column_{i}" for i, n in enumerate(names, start=1)]
    dupes = sorted(n for n, k in Counter(names).items() if k > 1)
    if dupes:
        raise DataError(f"{path}: duplicate column name(s) in the header: {', '.join(dupes)}")
    return _Header(names, number)


def read_header(path: str | Path) -> list[str]:
    """Column names of a CSV flow table (cleaned like :func:`read_flow_table` does)."""
    path = _existing_file(path)
    return _read_header(path).names


def _existing_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"flow table not found: {path}")
    if not path.is_file():
        raise DataError(f"{path} is not a file")
    return path


def _scan(path: Path, header: _Header) -> pl.LazyFrame:
    """Every column as text under its cleaned name; nothing is read yet."""
    lf = pl.scan_csv(path, infer_schema=False, has_header=True)
    raw = lf.collect_schema().names()
    if len(raw) != len(header.names):  # pragma: no cover - polars and csv disagree
        raise DataError(f"{path}: could not parse the header line")
    return lf.rename({r: c for r, c in zip(raw, header.names, strict=True) if r != c})


def _clean(name: str) -> pl.Expr:
    """Trimmed text, with empty cells as null."""
    s = pl.col(name).str.strip_chars()
    return pl.when(s.str.len_bytes() == 0).then(None).otherwise(s).alias(name)


def _number(name: str, dtype: pl.DataType) -> pl.Expr:
    """Decimal or ``0x`` hexadecimal text to a float; anything else becomes null."""
    s = pl.col(name)
    is_hex = s.str.starts_with("0x") | s.str.starts_with("0X")
    hex_value = s.str.slice(2).str.to_integer(base=16, strict=False).cast(dtype)
    return pl.when(is_hex).then(hex_value).otherwise(s.cast(dtype, strict=False)).alias(name)


def _collect(lf: pl.LazyFrame, path: Path) -> pl.DataFrame:
    try:
        return lf.collect(engine="streaming")
    except pl.exceptions.PolarsError as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"{path}: cannot be read as a CSV flow table ({detail}); every row must have the "
            "header's number of comma-separated fields, in UTF-8"
        ) from exc


def _guess_text_columns(lf: pl.LazyFrame, columns: Sequence[str], path: Path) -> list[str]:
    """Columns whose first :data:`SAMPLE_ROWS` non-empty cells are not all numbers."""
    sample = _collect(lf.select([_clean(c) for c in columns]).head(SAMPLE_ROWS), path)
    text = []
    for c in columns:
        values = sample[c]
        parsed = sample.select(_number(c, pl.Float64))[c]
        if int((values.is_not_null() & parsed.is_null()).sum()) > 0:
            text.append(c)
    return text


def _diagnose(
    lf: pl.LazyFrame, columns: Sequence[str], header: _Header, dtype: pl.DataType, path: Path
) -> dict[str, tuple[int, str, int]]:
    """For each column: (non-numbers, first bad value, its line). Only bad columns kept."""
    indexed = lf.with_row_index("__row").select(["__row", *[_clean(c) for c in columns]])
    aggs = []
    for c in columns:
        bad = pl.col(c).is_not_null() & _number(c, dtype).is_null()
        aggs += [
            bad.sum().alias(f"{c}\0n"),
            pl.col(c).filter(bad).first().alias(f"{c}\0v"),
            pl.col("__row").filter(bad).first().alias(f"{c}\0r"),
        ]
    row = _collect(indexed.select(aggs), path).row(0, named=True)
    out = {}
    for c in columns:
        if row[f"{c}\0n"]:
            line = header.line + 1 + int(row[f"{c}\0r"])
            out[c] = (int(row[f"{c}\0n"]), str(row[f"{c}\0v"]), line)
    return out


def _replace_undefined(df: pl.DataFrame, numeric: Sequence[str], path: Path) -> pl.DataFrame:
    """NaN, +/-inf and empty cells -> 0, logging how many per column."""
    if not numeric or df.height == 0:
        return df
    stats = df.select(
        [pl.col(c).is_null().sum().alias(f"{c}\0empty") for c in numeric]
        + [pl.col(c).is_nan().sum().alias(f"{c}\0nan") for c in numeric]
        + [pl.col(c).is_infinite().sum().alias(f"{c}\0inf") for c in numeric]
    ).row(0, named=True)
    fix = []
    for c in numeric:
        empty, nan, inf = (int(stats[f"{c}\0{k}"]) for k in ("empty", "nan", "inf"))
        if empty + nan + inf:
            log.warning(
                "%s: column %r: replaced %d NaN, %d infinite and %d empty value(s) by 0",
                path,
                c,
                nan,
                inf,
                empty,
            )
            col = pl.col(c)
            fix.append(
                pl.when(col.is_null() | col.is_nan() | col.is_infinite())
                .then(pl.lit(0, dtype=df.schema[c]))
                .otherwise(col)
                .alias(c)
            )
    return df.with_columns(fix) if fix else df


def read_flow_table(
    path: str | Path,
    *,
    columns: Sequence[str] | None = None,
    text_columns: Sequence[str] | None = None,
    float_dtype: type[pl.Float32] | type[pl.Float64] = pl.Float64,
    keep_text: Sequence[str] = (),
) -> pl.DataFrame:
    """Read a CSV flow table robustly (see the module docstring for what is tolerated).

    ``columns``: the columns to read, in this order (default: all, in file order); a missing
    one is an error listing every missing name. ``text_columns``: columns kept as text; all
    other columns read must be numeric. Left as ``None``, each column is numeric when its
    values are numbers and text otherwise. Numeric columns come back as ``float_dtype``
    (Float64 by default: epoch-second timestamps need it). ``keep_text``: columns always
    kept as text, whatever ``text_columns`` says (e.g. a label column of 0/1).
    """
    path = _existing_file(path)
    header = _read_header(path)
    wanted = list(columns) if columns is not None else list(header.names)
    if not wanted:
        raise ValueError("read_flow_table: no columns to read")
    missing = [c for c in wanted if c not in header.names]
    if missing:
        raise DataError(f"{path}: missing column(s): {', '.join(missing)}")
    lf = _scan(path, header)
    forced = set(keep_text)
    if text_columns is None:
        guessed = set(_guess_text_columns(lf, [c for c in wanted if c not in forced], path))
        text = [c for c in wanted if c in guessed or c in forced]
        strict = False
    else:
        text = [c for c in wanted if c in set(text_columns) or c in forced]
        strict = True
    numeric = [c for c in wanted if c not in text]
    cleaned = lf.select([_clean(c) for c in wanted]).filter(
        pl.any_horizontal([pl.col(c).is_not_null() for c in wanted])
    )
    df = _collect(
        cleaned.select([pl.col(c) if c in text else _number(c, float_dtype) for c in wanted]),
        path,
    )
    maybe_bad = [c for c in numeric if df[c].null_count()]
    bad = _diagnose(lf, maybe_bad, header, float_dtype, path) if maybe_bad else {}
    if bad and strict:
        column, (count, sample, line) = next(iter(bad.items()))
        raise NonNumericColumnError(path, column, sample, count, line)
    if bad:  # guessed numeric from the first rows, but text further down: keep it as text
        as_text = _collect(cleaned.select(list(bad)), path)
        df = df.with_columns([as_text[c] for c in bad])
        numeric = [c for c in numeric if c not in bad]
    return _replace_undefined(df, numeric, path)


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
