"""Reading flow tables from CSV files, tolerantly and frugally.

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
"""

from __future__ import annotations

import csv
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

log = logging.getLogger("fedids.data.loaders")

#: Rows looked at to guess which columns are numeric when the caller does not say.
SAMPLE_ROWS = 10_000


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


# Their public home is fedids.data.loaders (where they were defined first): error tables
# that name types by module.qualname (fedids.failures.KNOWN_ERRORS) keep recognizing them.
DataError.__module__ = "fedids.data.loaders"
NonNumericColumnError.__module__ = "fedids.data.loaders"


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
