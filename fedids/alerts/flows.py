"""Read flow records and score them with the detector in vectorized batches.

Hot path: polars selects and casts the model's feature columns in one pass, numpy holds
the float32 matrix, torch scores a batch at a time. Only the flagged rows (a small
minority) are turned into the context table (addresses, ports, protocol, times) that
alerts are built from, so no per-flow Python runs for normal traffic.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from fedids.alerts.errors import AlertsInputError

log = logging.getLogger(__name__)

#: context column -> accepted names in flow files (case-insensitive), WUSTL's first
CONTEXT_COLUMNS: dict[str, tuple[str, ...]] = {
    "src": ("SrcAddr", "src_ip", "srcip", "saddr", "source_ip", "Src IP"),
    "dst": ("DstAddr", "dst_ip", "dstip", "daddr", "destination_ip", "Dst IP"),
    "sport": ("Sport", "src_port", "sport", "Src Port"),
    "dport": ("Dport", "dst_port", "dport", "Dst Port"),
    "proto": ("Proto", "protocol", "proto"),
    "start": ("StartTime", "stime", "start_time", "timestamp"),
    "last": ("LastTime", "ltime", "last_time", "end_time"),
}

#: IANA protocol numbers -> the lowercase names STIX uses in network-traffic:protocols
IANA_PROTOCOLS = {
    1: "icmp",
    2: "igmp",
    6: "tcp",
    17: "udp",
    47: "gre",
    50: "esp",
    58: "ipv6-icmp",
    132: "sctp",
}

#: STIX timestamps must fall in years 0001..9999; anything else is treated as unknown
_MAX_EPOCH = 253402300799.0


def _context_names(columns: Sequence[str]) -> list[str]:
    """The columns of a file that alerts use (addresses, ports, protocol, times)."""
    lowered = {c.lower(): c for c in columns}
    return [
        lowered[n.lower()]
        for names in CONTEXT_COLUMNS.values()
        for n in names
        if n.lower() in lowered
    ]


def read_flows(path: str | Path, feature_names: Sequence[str] | None = None) -> pl.DataFrame:
    """Read a flow CSV; errors name the file (and the missing columns).

    With ``feature_names``, only those columns and the alert context columns are parsed,
    and a missing feature column is reported before any data is read. Uses the project's
    robust reader (``fedids.data.loaders``) when it is installed, else a plain polars read.
    """
    path = Path(path)
    if not path.exists():
        raise AlertsInputError(f"flow file not found: {path}")
    if not path.is_file():
        raise AlertsInputError(f"{path} is not a file (give a flow CSV with --input)")
    if path.stat().st_size == 0:
        raise AlertsInputError(f"{path}: the file is empty (no header, no flow records)")
    try:
        from fedids.data import loaders
    except ImportError:
        loaders = None  # type: ignore[assignment]
    try:
        if loaders is not None:
            header = loaders.read_header(path)
        else:
            header = pl.read_csv(path, n_rows=0, infer_schema=False).columns
            header = [c.strip().lstrip("\ufeff") for c in header]
        columns = None
        if feature_names is not None:
            missing = [c for c in feature_names if c not in header]
            if missing:
                raise AlertsInputError(
                    f"{path}: missing feature column(s) {', '.join(missing)} required by the model"
                )
            wanted = set(feature_names) | set(_context_names(header))
            columns = [c for c in header if c in wanted]
        if loaders is not None:
            return loaders.read_flow_table(path, columns=columns)
        df = pl.read_csv(path, infer_schema=False, encoding="utf8-lossy", raise_if_empty=False)
        df = df.rename({c: c.strip().lstrip("\ufeff") for c in df.columns})
        return df.select(columns) if columns is not None else df
    except AlertsInputError:
        raise
    except (OSError, ValueError, pl.exceptions.PolarsError) as exc:
        msg = str(exc)
        raise AlertsInputError(msg if str(path) in msg else f"{path}: {msg}") from exc


def _as_float(df: pl.DataFrame, name: str) -> pl.Expr:
    """A column as float64: numbers as they are, text parsed (hex like ``0x0303`` too)."""
    col = pl.col(name)
    dtype = df.schema[name]
    if dtype.is_numeric() or dtype == pl.Boolean:
        return col.cast(pl.Float64)
    text = col.cast(pl.String).str.strip_chars()
    hexed = text.str.to_lowercase().str.strip_prefix("0x").str.to_integer(base=16, strict=False)
    return (
        pl.when(text.str.to_lowercase().str.starts_with("0x"))
        .then(hexed.cast(pl.Float64))
        .otherwise(text.cast(pl.Float64, strict=False))
    )


def _protocol_names_as_numbers(df: pl.DataFrame, feature_names: Sequence[str]) -> pl.DataFrame:
    """A ``Proto`` feature written as names (tcp, udp) becomes IANA numbers, as in training."""
    if "Proto" not in feature_names or df.schema["Proto"] != pl.String:
        return df
    from fedids.data.loaders import PROTOCOL_NUMBERS

    mapping = {k: str(v) for k, v in PROTOCOL_NUMBERS.items()}
    return df.with_columns(
        pl.col("Proto").str.strip_chars().str.to_lowercase().replace(mapping).alias("Proto")
    )


def _encoder_of(features: object) -> object | None:
    """The training encoder behind ``features`` (a detector's ``feature_names``, a
    Detector or an Encoder), or None for a plain list of column names."""
    for candidate in (features, getattr(features, "encoder", None)):
        if candidate is not None and hasattr(candidate, "parse") and hasattr(candidate, "spec"):
            return candidate
    return None


def _encoded_columns(df: pl.DataFrame, encoder: object, source: str) -> np.ndarray:
    """Cells parsed by the encoder's own rules (``FeatureSpec.parse``): exactly as in
    training, unknown categories included (they go to the encoder's "other" input)."""
    spec = encoder.spec  # type: ignore[attr-defined]
    missing = [c for c in spec.names if c not in df.columns]
    if missing:
        raise AlertsInputError(
            f"{source}: missing feature column(s) {', '.join(missing)} required by the model"
        )
    if df.height == 0:
        return np.empty((0, len(spec.names)), dtype=np.float64)
    from fedids.data.spec import parse_column

    for col in spec.of_kind("numeric"):
        series = df[col.name]
        if series.dtype != pl.String:
            continue
        present = int((series.str.strip_chars().str.len_bytes() > 0).sum())
        _, unreadable = parse_column(series, col)
        if present and unreadable - (df.height - present) == present:
            example = series.drop_nulls().head(1).item()
            raise AlertsInputError(
                f"{source}: column {col.name} holds no numbers (e.g. {example!r}); "
                "the model was trained on numbers there"
            )
    return encoder.parse(df, source=source)  # type: ignore[attr-defined]


def feature_matrix(df: pl.DataFrame, feature_names: Sequence[str], source: str) -> np.ndarray:
    """The model's input columns, one value per cell, in ``feature_names`` order.

    Give it ``detector.feature_names`` (or the detector): cells are then parsed by the
    encoder the model was trained with (``model.pt``), so text, boolean-like and numeric
    cells mean exactly what they meant in training; the result (float64, exact) goes to
    ``detector.predict_proba``. With a plain list of names (pre-v2 all-numeric models),
    cells are read as numbers (float32).

    A missing column is an error naming it and ``source``. Numeric cells that are not
    numbers, NaN or infinite become 0 with a warning (counted per column): one bad cell
    should not stop detection on a million flows, but a numeric column with no number at
    all is an error.
    """
    encoder = _encoder_of(feature_names)
    if encoder is not None:
        return _encoded_columns(df, encoder, source)
    missing = [c for c in feature_names if c not in df.columns]
    if missing:
        raise AlertsInputError(
            f"{source}: missing feature column(s) {', '.join(missing)} required by the model"
        )
    if df.height == 0:
        return np.empty((0, len(feature_names)), dtype=np.float32)
    df = _protocol_names_as_numbers(df, feature_names)
    exprs = [_as_float(df, c).cast(pl.Float32).alias(c) for c in feature_names]
    feats = df.select(exprs)
    nulls = feats.null_count().row(0)
    bad_cols = [(c, n) for c, n in zip(feature_names, nulls, strict=True) if n]
    for c, n in bad_cols:
        if n == df.height and df[c].null_count() < df.height:
            example = df[c].drop_nulls().head(1).item()
            raise AlertsInputError(
                f"{source}: column {c} holds no numbers (e.g. {example!r}); the model needs numbers"
            )
    x = feats.fill_null(0.0).to_numpy(order="c").astype(np.float32, copy=False)
    finite = np.isfinite(x)
    if not finite.all():
        n_bad = int((~finite).sum())
        x[~finite] = 0.0
        log.warning("%s: %d NaN/infinite feature value(s) scored as 0", source, n_bad)
    if bad_cols:
        log.warning(
            "%s: empty or non-numeric feature cells scored as 0: %s",
            source,
            ", ".join(f"{c} ({n})" for c, n in bad_cols),
        )
    return x


def normal_class_index(class_names: Sequence[str]) -> int:
    """The class meaning benign traffic: named 'normal' (any case), else the first class."""
    for i, name in enumerate(class_names):
        if str(name).strip().lower() in ("normal", "benign"):
            return i
    return 0


@dataclass(frozen=True)
class Verdicts:
    """Per-flow outcome: ``flagged`` mask, reported class index and its probability."""

    flagged: np.ndarray  # bool
    class_idx: np.ndarray  # int64
    prob: np.ndarray  # float32, probability of the reported class


def decide(probs: np.ndarray, normal_idx: int, threshold: float | None) -> Verdicts:
    """Turn class probabilities into verdicts.

    ``threshold`` None: a flow is flagged when its most probable class is not normal.
    ``threshold`` P: flagged when the attack probability (1 - p(normal)) is at least P;
    the reported class is then the most probable attack class.
    """
    if threshold is None:
        cls = probs.argmax(axis=1)
        flagged = cls != normal_idx
    else:
        attack = probs.copy()
        attack[:, normal_idx] = -1.0
        cls = attack.argmax(axis=1)
        flagged = (1.0 - probs[:, normal_idx]) >= threshold
    prob = np.take_along_axis(probs, cls[:, None], axis=1)[:, 0]
    return Verdicts(flagged=flagged, class_idx=cls.astype(np.int64), prob=prob.astype(np.float32))


def score(
    predict_proba: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    batch_size: int = 65536,
    tick: Callable[[], None] | None = None,
) -> np.ndarray:
    """Class probabilities, ``batch_size`` rows at a time (bounded memory).

    ``tick`` runs between batches (the Kafka producer uses it to serve delivery reports).
    """
    if batch_size < 1:
        raise AlertsInputError(f"batch size must be at least 1, got {batch_size}")
    parts = []
    for start in range(0, len(x), batch_size):
        parts.append(predict_proba(x[start : start + batch_size]))
        if tick is not None:
            tick()
    if not parts:
        return np.empty((0, 0), dtype=np.float32)
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def _find_column(df: pl.DataFrame, candidates: Sequence[str]) -> str | None:
    lowered = {c.lower(): c for c in df.columns}
    for name in candidates:
        if name.lower() in lowered:
            return lowered[name.lower()]
    return None


def _epoch_seconds(df: pl.DataFrame, name: str) -> pl.Expr:
    """Epoch seconds from numbers (milliseconds recognized) or date-time text."""
    dtype = df.schema[name]
    if dtype.is_temporal():
        secs = pl.col(name).cast(pl.Datetime("us")).dt.epoch("us").cast(pl.Float64) / 1e6
    else:
        num = _as_float(df, name)
        if dtype == pl.String:
            parsed = pl.col(name).str.strip_chars().str.to_datetime(strict=False, time_zone="UTC")
            num = pl.coalesce(num, parsed.dt.epoch("us").cast(pl.Float64) / 1e6)
        secs = pl.when(num > 1e11).then(num / 1000.0).otherwise(num)
    # 0 is what readers write for an empty cell: no real flow started at the epoch
    return pl.when((secs > 0) & (secs <= _MAX_EPOCH)).then(secs).otherwise(None)


def _protocol(df: pl.DataFrame, name: str) -> pl.Expr:
    """Protocol names: text lowercased, IANA numbers (6, 17, ...) named, others as text."""
    num = _as_float(df, name)
    text = pl.col(name).cast(pl.String).str.strip_chars().str.to_lowercase()
    as_int = pl.when(num == num.floor()).then(num).otherwise(None).cast(pl.Int64)
    named = as_int.replace_strict(IANA_PROTOCOLS, default=as_int.cast(pl.String))
    out = pl.when(num.is_not_null()).then(named).otherwise(text)
    return pl.when(out == "").then(None).otherwise(out)


def context_table(df: pl.DataFrame) -> pl.DataFrame:
    """Standard context columns for alerts: src, dst (text), sport, dport (int), proto
    (lowercase text), start, last (epoch seconds). Absent columns are all null."""
    exprs: list[pl.Expr] = []
    for std, candidates in CONTEXT_COLUMNS.items():
        name = _find_column(df, candidates)
        if name is None:
            dtype = {
                "src": pl.String,
                "dst": pl.String,
                "proto": pl.String,
                "sport": pl.Int64,
                "dport": pl.Int64,
            }.get(std, pl.Float64)
            exprs.append(pl.lit(None, dtype=dtype).alias(std))
        elif std in ("src", "dst"):
            e = pl.col(name).cast(pl.String).str.strip_chars()
            exprs.append(pl.when(e == "").then(None).otherwise(e).alias(std))
        elif std == "proto":
            exprs.append(_protocol(df, name).alias(std))
        elif std in ("sport", "dport"):
            v = _as_float(df, name)
            # port 0 counts as unknown: readers write 0 for an empty cell
            ok = (v > 0) & (v <= 65535) & (v == v.floor())
            exprs.append(pl.when(ok).then(v).otherwise(None).cast(pl.Int64).alias(std))
        else:
            exprs.append(_epoch_seconds(df, name).alias(std))
    return df.select(exprs)


def detections_table(
    df: pl.DataFrame, verdicts: Verdicts, class_names: Sequence[str]
) -> pl.DataFrame:
    """Flagged flows only: context columns plus ``attack_class`` and ``prob``."""
    mask = pl.Series("flagged", verdicts.flagged)
    flagged = df.filter(mask)
    names = np.asarray([str(c) for c in class_names], dtype=object)
    return context_table(flagged).with_columns(
        pl.Series("attack_class", names[verdicts.class_idx[verdicts.flagged]], dtype=pl.String),
        pl.Series("prob", verdicts.prob[verdicts.flagged], dtype=pl.Float32),
    )
