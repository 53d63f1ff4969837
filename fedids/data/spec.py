"""Column kinds: which input columns a detector reads, and how each cell becomes a number.

A :class:`FeatureSpec` is the *input layout* of a federation: every device must hold the
same one (same columns, same kinds, same class list), or their models would disagree on
what input 17 means. Kinds are inferred from the data and can be pinned in
``conf/dataset`` (``numeric_columns``, ``boolean_columns``, ``categorical_columns``,
``vocabularies``); :meth:`FeatureSpec.digest` lets devices compare layouts without
showing each other any data.

:meth:`FeatureSpec.parse` turns a raw table (text or numbers, as read) into one float
per cell and column. It is the *only* place cells are interpreted, used for training
statistics, for training and for detection alike, so a cell means the same everywhere:

* numeric: numbers, ``0x`` hexadecimal, numbers written as text (and protocol names in
  protocol columns, as IANA numbers); empty cells, missing
  markers (``-``, ``?``, ``nan``...), NaN and infinities become 0 (what flow meters write
  for "no such activity"), counted so callers can say how many;
* boolean: ``true/false``, ``on/off``, ``yes/no``, ``t/f``, ``y/n``, ``1/0`` (any case,
  stray spaces) -> 1 / 0; anything else (empty, unknown) -> NaN, encoded as "unknown";
* categorical: normalized text (trimmed, lower case, integral numbers written as
  integers so ``6``, ``6.0`` and ``" 6 "`` agree, protocol names in protocol columns as
  IANA numbers so ``tcp`` and ``6`` agree) -> a vocabulary index (unknown -> the
  vocabulary's length) or a stable hash id in ``[0, hash_space)``. Unknown categories
  never fail: they land in an "other" input of the encoder.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import polars as pl

log = logging.getLogger(__name__)

Kind = Literal["numeric", "boolean", "categorical"]
KINDS: tuple[str, ...] = ("numeric", "boolean", "categorical")

#: Text read as true / false in boolean-like columns (compared trimmed, in lower case).
TRUE_TOKENS = frozenset({"true", "t", "yes", "y", "on", "1", "1.0"})
FALSE_TOKENS = frozenset({"false", "f", "no", "n", "off", "0", "0.0"})

#: Text meaning "no value" in a numeric column (flow exports write these).
MISSING_MARKERS = frozenset({"-", "?", "na", "n/a", "nan", "null", "none", "--"})

#: IANA numbers for protocol names, applied to categorical columns named like a protocol.
PROTOCOL_NUMBERS = {"icmp": 1, "igmp": 2, "tcp": 6, "udp": 17, "ipv6-icmp": 58, "sctp": 132}
PROTOCOL_COLUMNS = frozenset({"proto", "protocol"})

#: Hash ids per hashed categorical column (the encoder keeps the most frequent ones).
DEFAULT_HASH_SPACE = 1024

#: Unique share above which a text column looks like an identifier, not a category.
ID_LIKE_UNIQUE_SHARE = 0.5


class SpecError(ValueError):
    """A column-kind setting or a layout that cannot be used (the message says which)."""


@dataclass(frozen=True)
class ColumnSpec:
    """One input column: its name, kind and (categorical) vocabulary or hash space."""

    name: str
    kind: Kind
    vocabulary: tuple[str, ...] | None = None  # categorical with a configured vocabulary
    hash_space: int = DEFAULT_HASH_SPACE  # categorical without one

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.kind == "categorical":
            if self.vocabulary is not None:
                d["vocabulary"] = list(self.vocabulary)
            else:
                d["hash_space"] = self.hash_space
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ColumnSpec:
        kind = str(d["kind"])
        if kind not in KINDS:
            raise SpecError(f"column {d.get('name')!r}: unknown kind {kind!r}")
        vocab = d.get("vocabulary")
        return cls(
            name=str(d["name"]),
            kind=kind,  # type: ignore[arg-type]
            vocabulary=None if vocab is None else tuple(str(v) for v in vocab),
            hash_space=int(d.get("hash_space", DEFAULT_HASH_SPACE)),
        )


@dataclass(frozen=True)
class FeatureSpec:
    """The input layout: columns in model order, and the class list (benign first)."""

    columns: tuple[ColumnSpec, ...]
    class_names: tuple[str, ...]
    _cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def of_kind(self, kind: Kind) -> list[ColumnSpec]:
        return [c for c in self.columns if c.kind == kind]

    def to_dict(self) -> dict[str, Any]:
        return {
            "columns": [c.to_dict() for c in self.columns],
            "class_names": list(self.class_names),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureSpec:
        return cls(
            tuple(ColumnSpec.from_dict(c) for c in d["columns"]),
            tuple(str(c) for c in d["class_names"]),
        )

    def digest(self) -> str:
        """Short hash of the layout: devices of one federation must report the same one."""
        if "digest" not in self._cache:
            text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
            self._cache["digest"] = hashlib.sha256(text.encode()).hexdigest()[:16]
        return self._cache["digest"]

    def describe(self) -> str:
        """One line: kinds and their columns (for logs and error messages)."""
        parts = []
        for kind in KINDS:
            cols = [c.name for c in self.columns if c.kind == kind]
            if cols:
                parts.append(f"{kind}: {', '.join(cols)}")
        return "; ".join(parts)

    def parse(self, frame: pl.DataFrame, *, source: str = "", warn: bool = True) -> np.ndarray:
        """One float64 per cell, columns in spec order (see the module docstring).

        A missing column is an error naming it and ``source``. With ``warn``, cells that
        were replaced (numeric) or unknown (boolean) are logged per column.
        """
        missing = [c.name for c in self.columns if c.name not in frame.columns]
        if missing:
            where = f"{source}: " if source else ""
            raise SpecError(f"{where}missing feature column(s): {', '.join(missing)}")
        out = np.empty((frame.height, len(self.columns)), dtype=np.float64)
        notes = []
        for j, col in enumerate(self.columns):
            values, n_odd = parse_column(frame[col.name], col)
            out[:, j] = values
            if n_odd:
                what = "scored as 0" if col.kind == "numeric" else "unknown"
                notes.append(f"{col.name} ({n_odd} {what})")
        if warn and notes:
            log.warning(
                "%s: empty or unreadable cells: %s", source or "input", ", ".join(notes)
            )
        return out


# --- cell parsing ------------------------------------------------------------------------


def _text(series: pl.Series) -> pl.Series:
    """Trimmed lower-case text; empty cells null."""
    s = series.cast(pl.String).str.strip_chars().str.to_lowercase()
    return pl.select(pl.when(s.str.len_bytes() == 0).then(None).otherwise(s)).to_series()


def numbers_from_text(series: pl.Series) -> pl.Series:
    """Decimal or ``0x`` hexadecimal text -> float64; anything else null."""
    s = series.cast(pl.String).str.strip_chars()
    low = s.str.to_lowercase()
    hexed = low.str.strip_prefix("0x").str.to_integer(base=16, strict=False).cast(pl.Float64)
    dec = s.cast(pl.Float64, strict=False)
    return pl.select(pl.when(low.str.starts_with("0x")).then(hexed).otherwise(dec)).to_series()


def _numeric(series: pl.Series, column: str) -> tuple[np.ndarray, int]:
    if series.dtype.is_numeric() or series.dtype == pl.Boolean:
        x = series.cast(pl.Float64).to_numpy().astype(np.float64, copy=True)
    else:
        if column.strip().lower() in PROTOCOL_COLUMNS:  # protocol names as IANA numbers
            mapping = {k: str(v) for k, v in PROTOCOL_NUMBERS.items()}
            series = series.str.strip_chars().str.to_lowercase().replace(mapping)
        x = numbers_from_text(series).to_numpy().astype(np.float64, copy=True)
    bad = ~np.isfinite(x)
    n_bad = int(bad.sum())
    if n_bad:
        x[bad] = 0.0
    return x, n_bad


def _boolean(series: pl.Series) -> tuple[np.ndarray, int]:
    if series.dtype.is_numeric() or series.dtype == pl.Boolean:
        v = series.cast(pl.Float64).to_numpy()
        out = np.where(v == 1, 1.0, np.where(v == 0, 0.0, np.nan))
    else:
        t = _text(series)
        mapping = {**{k: 1.0 for k in TRUE_TOKENS}, **{k: 0.0 for k in FALSE_TOKENS}}
        out = (
            t.replace_strict(mapping, default=None, return_dtype=pl.Float64)
            .to_numpy()
            .astype(np.float64)
        )
    return out, int(np.isnan(out).sum())


def category_keys(series: pl.Series, column: str) -> pl.Series:
    """Normalized category text (see the module docstring); empty cells are ``""``."""
    if series.dtype.is_numeric() or series.dtype == pl.Boolean:
        text = series.cast(pl.Float64)
        as_int = pl.select(
            pl.when(text == text.floor()).then(text.cast(pl.Int64).cast(pl.String))
        ).to_series()
        s = pl.select(pl.coalesce(as_int, text.cast(pl.String))).to_series()
    else:
        s = _text(series)
        num = s.cast(pl.Float64, strict=False)
        integral = pl.select(
            pl.when(num.is_finite() & (num == num.floor()) & (num.abs() < 2**53))
            .then(num.cast(pl.Int64).cast(pl.String))
        ).to_series()
        s = pl.select(pl.coalesce(integral, s)).to_series()
    if column.strip().lower() in PROTOCOL_COLUMNS:
        s = s.replace({k: str(v) for k, v in PROTOCOL_NUMBERS.items()})
    return s.fill_null("")


def stable_hash(key: str, space: int) -> int:
    """A hash id in ``[0, space)`` that is the same on every machine and Python run."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % space


def _categorical(series: pl.Series, col: ColumnSpec) -> tuple[np.ndarray, int]:
    keys = category_keys(series, col.name)
    uniques = keys.unique().to_list()
    if col.vocabulary is not None:
        index = {str(v).strip().lower(): i for i, v in enumerate(col.vocabulary)}
        unknown = len(col.vocabulary)
        mapping = {u: float(index.get(u, unknown)) for u in uniques}
        out = keys.replace_strict(mapping, return_dtype=pl.Float64).to_numpy()
        return out.astype(np.float64), int((out == unknown).sum())
    mapping = {u: float(stable_hash(u, col.hash_space)) for u in uniques}
    out = keys.replace_strict(mapping, return_dtype=pl.Float64).to_numpy()
    return out.astype(np.float64), 0


def parse_column(series: pl.Series, col: ColumnSpec) -> tuple[np.ndarray, int]:
    """(values, number of replaced/unknown cells) for one column of ``col``'s kind."""
    if col.kind == "numeric":
        return _numeric(series, col.name)
    if col.kind == "boolean":
        return _boolean(series)
    return _categorical(series, col)


# --- inference ---------------------------------------------------------------------------


def _listed(dataset: Mapping[str, Any], key: str) -> list[str]:
    value = dataset.get(key)
    if value in (None, ""):
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def infer_kind(series: pl.Series) -> Kind:
    """numeric if every non-empty cell is a number (or a missing marker), boolean if every
    one is a boolean token, categorical otherwise."""
    if series.dtype.is_numeric() or series.dtype == pl.Boolean:
        return "numeric"
    t = _text(series).drop_nulls()
    uniques = set(t.unique().to_list())
    if not uniques:
        return "numeric"
    if uniques <= (TRUE_TOKENS | FALSE_TOKENS) and not uniques <= {"0", "1", "0.0", "1.0"}:
        return "boolean"
    rest = [u for u in uniques if u not in MISSING_MARKERS]
    if not rest or numbers_from_text(pl.Series(rest)).null_count() == 0:
        return "numeric"
    return "categorical"


def override_lists(dataset: Mapping[str, Any]) -> dict[str, Kind]:
    """Column -> kind pinned by ``dataset.{numeric,boolean,categorical}_columns``."""
    pinned: dict[str, Kind] = {}
    for kind in KINDS:
        for name in _listed(dataset, f"{kind}_columns"):
            if name in pinned and pinned[name] != kind:
                raise SpecError(
                    f"dataset: column {name!r} is listed as both {pinned[name]} and {kind}"
                )
            pinned[name] = kind  # type: ignore[assignment]
    for name in (dataset.get("vocabularies") or {}):
        if pinned.get(str(name), "categorical") != "categorical":
            raise SpecError(
                f"dataset.vocabularies has column {name!r}, which is listed as "
                f"{pinned[str(name)]}"
            )
        pinned[str(name)] = "categorical"
    return pinned


def infer_spec(
    frame: pl.DataFrame,
    dataset: Mapping[str, Any],
    class_names: Sequence[str],
    *,
    source: str = "",
    fixed: Mapping[str, Kind] | None = None,
) -> FeatureSpec:
    """The layout of ``frame``'s columns (all of them are features, in this order).

    Kinds come from, in order: ``dataset.*_columns`` / ``dataset.vocabularies``, then
    ``fixed`` (what a known schema says), then the data (:func:`infer_kind`). A pinned
    column absent from the frame is an error naming it.
    """
    pinned = override_lists(dataset)
    where = f"{source}: " if source else ""
    absent = [c for c in pinned if c not in frame.columns]
    if absent:
        raise SpecError(
            f"{where}dataset sets the kind of column(s) that are not features of the file: "
            f"{', '.join(absent)} (features: {', '.join(frame.columns)})"
        )
    vocabularies = {str(k): v for k, v in (dataset.get("vocabularies") or {}).items()}
    hash_space = int(dataset.get("hash_space") or DEFAULT_HASH_SPACE)
    if hash_space < 2:
        raise SpecError(f"dataset.hash_space must be at least 2, got {hash_space}")
    columns = []
    for name in frame.columns:
        kind = pinned.get(name) or (fixed or {}).get(name) or infer_kind(frame[name])
        vocab = None
        if kind == "categorical" and name in vocabularies:
            raw = vocabularies[name]
            if isinstance(raw, str) or not raw:
                raise SpecError(f"dataset.vocabularies.{name} must be a non-empty list")
            vocab = tuple(str(v).strip().lower() for v in raw)
            if len(set(vocab)) != len(vocab):
                raise SpecError(f"dataset.vocabularies.{name} lists a value twice: {list(raw)}")
        if kind == "categorical" and vocab is None and frame.height:
            share = frame[name].n_unique() / frame.height
            if share > ID_LIKE_UNIQUE_SHARE and frame.height >= 100:
                log.warning(
                    "%scolumn %r has %.0f%% distinct values: it looks like an identifier "
                    "(address, timestamp); if it is not a feature, add it to "
                    "dataset.drop_columns",
                    where,
                    name,
                    100 * share,
                )
        columns.append(ColumnSpec(name, kind, vocab, hash_space))
    if not columns:
        raise SpecError(f"{where}no feature columns")
    return FeatureSpec(tuple(columns), tuple(str(c) for c in class_names))
