"""The encoder: raw columns -> the detector's float32 inputs, identical on every device.

Built by :func:`build_encoder` from a :class:`~fedids.data.spec.FeatureSpec` and the
federation's summed statistics (:mod:`fedids.data.stats`), so every device computes the
same bin edges and normalization from the same totals, and stored in ``model.pt`` so that
detection encodes flows exactly as training did.

Two steps, kept apart on purpose: :meth:`Encoder.parse` (the spec's cell rules: one float
per column) and :meth:`Encoder.encode` (parsed values -> model inputs), because alert
tooling hands the detector parsed rows (``fedids.alerts.flows.feature_matrix``).

Per numeric column, ``encoding.numeric`` lists the representations concatenated:

* ``quantile``: 2 * F(x) - 1, with F the federation's empirical distribution function
  (piecewise linear over the fine histogram): one input in [-1, 1], robust to outliers;
* ``periodic``: sin / cos(pi * 2**k * F(x)), k < ``frequencies``: 2 x frequencies inputs
  that let a small MLP learn value-specific patterns (narrow value ranges of one class)
  with few parameters (multi-resolution "positional" features of the quantile);
* ``onehot``: which of ``bins`` quantile bins x falls in (Gorishniy et al. 2022);
* ``ple``: piecewise-linear encoding over the same bins (Gorishniy et al. 2022);
* ``standard``: (signed log1p(x) - mean) / std, the federation's mean and std.

Boolean columns give one input (+1 true, -1 false, 0 unknown); categorical columns a
one-hot over the kept categories plus an "other" input (hashed columns keep the
``categories`` most frequent hash ids of the federation; unknown values land in "other").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from fedids.data.spec import ColumnSpec, FeatureSpec
from fedids.data.stats import (
    check_totals,
    coarse_bounds,
    encoding_option,
    fine_grid,
    layout,
    stats_passes,
    summary_header,
)

ENCODER_FORMAT = "fedids-encoder/1"
REPRESENTATIONS = ("quantile", "periodic", "onehot", "ple", "standard")


class EncoderError(ValueError):
    """An encoder description or input that cannot be used."""


def _signed_log1p(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


@dataclass
class NumericStats:
    """What one numeric column's encoding needs: distribution knots, bin edges, moments."""

    knots_x: np.ndarray  # ascending values ...
    knots_f: np.ndarray  # ... and the distribution function there (0..1)
    edges: np.ndarray  # (bins - 1,) inner quantile-bin edges, non-decreasing
    mean: float  # of signed log1p(x)
    std: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "knots_x": self.knots_x.tolist(),
            "knots_f": self.knots_f.tolist(),
            "edges": self.edges.tolist(),
            "mean": self.mean,
            "std": self.std,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NumericStats:
        return cls(
            np.asarray(d["knots_x"], np.float64),
            np.asarray(d["knots_f"], np.float64),
            np.asarray(d["edges"], np.float64),
            float(d["mean"]),
            float(d["std"]),
        )

    def cdf(self, x: np.ndarray) -> np.ndarray:
        if len(self.knots_x) == 0:
            return np.full(len(x), 0.5)
        return np.interp(x, self.knots_x, self.knots_f)


def numeric_stats_from_histogram(
    lo: np.ndarray, hi: np.ndarray, counts: np.ndarray, bins: int
) -> NumericStats:
    """Knots, quantile edges and moments from a histogram over cells ``[lo, hi)``."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total <= 0:
        return NumericStats(np.zeros(0), np.zeros(0), np.zeros(bins - 1), 0.0, 1.0)
    keep = counts > 0
    lo, hi, c = lo[keep], hi[keep], counts[keep]
    cum = np.cumsum(c) / total
    # knots at each kept cell's lower and upper bound; the CDF is flat across gaps
    kx = np.empty(2 * len(c))
    kf = np.empty(2 * len(c))
    kx[0::2], kx[1::2] = lo, hi
    kf[0::2], kf[1::2] = np.concatenate([[0.0], cum[:-1]]), cum
    kx, first = np.unique(kx, return_index=True)  # adjacent cells share a bound
    kf = np.maximum.accumulate(kf[first] if len(first) else kf)
    kf[-1] = 1.0
    targets = np.arange(1, bins) / bins
    edges = np.interp(targets, kf, kx) if len(kx) > 1 else np.full(bins - 1, kx[0])
    mid = _signed_log1p((lo + hi) / 2.0)
    mean = float((mid * c).sum() / total)
    std = float(np.sqrt(max(((mid - mean) ** 2 * c).sum() / total, 0.0)))
    return NumericStats(kx, kf, edges, mean, std if std > 1e-6 else 1.0)


@dataclass
class CategoryStats:
    """Kept category codes (hash ids or vocabulary indices), in input order."""

    codes: np.ndarray  # int64 (k,)

    def to_dict(self) -> dict[str, Any]:
        return {"codes": self.codes.tolist()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CategoryStats:
        return cls(np.asarray(d["codes"], np.int64))


def _ple(x: np.ndarray, edges: np.ndarray, knots_x: np.ndarray) -> np.ndarray:
    """Piecewise-linear encoding over bins [b_0, b_1), ..., [b_{B-1}, b_B]."""
    lo_end = knots_x[0] if len(knots_x) else 0.0
    hi_end = knots_x[-1] if len(knots_x) else 1.0
    bounds = np.concatenate([[lo_end], edges, [hi_end]])
    left, right = bounds[:-1], bounds[1:]
    width = np.where(right > left, right - left, 1.0)
    z = (x[:, None] - left) / width
    z = np.where(right > left, z, (x[:, None] >= right).astype(np.float64))
    return np.clip(z, 0.0, 1.0)


@dataclass
class Encoder:
    """Spec + federation statistics + representation choice: the detector's input layer."""

    spec: FeatureSpec
    numeric: tuple[str, ...]
    bins: int
    frequencies: int
    num_stats: dict[str, NumericStats]
    cat_stats: dict[str, CategoryStats]
    n_total: int = 0
    class_counts: tuple[int, ...] = ()

    # -- layout ---------------------------------------------------------------------------
    def column_width(self, col: ColumnSpec) -> int:
        if col.kind == "numeric":
            w = {"quantile": 1, "standard": 1, "periodic": 2 * self.frequencies}
            return sum(w.get(r, self.bins) for r in self.numeric)
        if col.kind == "boolean":
            return 1
        return len(self.cat_stats[col.name].codes) + 1

    @property
    def n_inputs(self) -> int:
        return sum(self.column_width(c) for c in self.spec.columns)

    @property
    def feature_names(self) -> list[str]:
        return self.spec.names

    @property
    def class_names(self) -> list[str]:
        return list(self.spec.class_names)

    def digest(self) -> str:
        return self.spec.digest()

    # -- transform ------------------------------------------------------------------------
    def parse(self, frame: pl.DataFrame, *, source: str = "", warn: bool = True) -> np.ndarray:
        return self.spec.parse(frame, source=source, warn=warn)

    def encode(self, parsed: np.ndarray) -> np.ndarray:
        """Parsed columns (``parse``'s output, or raw numbers for all-numeric specs)."""
        x = np.asarray(parsed, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.spec.columns):
            raise EncoderError(
                f"expected {len(self.spec.columns)} feature columns, got shape {x.shape}"
            )
        parts = []
        for j, col in enumerate(self.spec.columns):
            v = x[:, j]
            if col.kind == "numeric":
                v = np.where(np.isfinite(v), v, 0.0)
                parts.extend(self._numeric(v, self.num_stats[col.name]))
            elif col.kind == "boolean":
                parts.append(np.where(v == 1, 1.0, np.where(v == 0, -1.0, 0.0))[:, None])
            else:
                codes = self.cat_stats[col.name].codes
                onehot = np.zeros((len(v), len(codes) + 1))
                pos = {int(c): i for i, c in enumerate(codes)}
                vi = np.where(np.isfinite(v), v, -1).astype(np.int64)
                uniq, inv = np.unique(vi, return_inverse=True)
                slot = np.array([pos.get(int(u), len(codes)) for u in uniq], dtype=np.int64)
                onehot[np.arange(len(v)), slot[inv]] = 1.0
                parts.append(onehot)
        if not parts:
            return np.zeros((len(x), 0), dtype=np.float32)
        return np.concatenate(parts, axis=1).astype(np.float32)

    def _numeric(self, v: np.ndarray, st: NumericStats) -> list[np.ndarray]:
        out = []
        q = None
        for rep in self.numeric:
            if rep in ("quantile", "periodic") and q is None:
                q = st.cdf(v)
            if rep == "quantile":
                out.append((2.0 * q - 1.0)[:, None])
            elif rep == "periodic":
                freq = np.pi * 2.0 ** np.arange(self.frequencies)
                a = q[:, None] * freq
                out += [np.sin(a), np.cos(a)]
            elif rep == "onehot":
                idx = np.searchsorted(st.edges, v, side="right")
                oh = np.zeros((len(v), self.bins))
                oh[np.arange(len(v)), idx] = 1.0
                out.append(oh)
            elif rep == "ple":
                out.append(_ple(v, st.edges, st.knots_x))
            elif rep == "standard":
                out.append(((_signed_log1p(v) - st.mean) / st.std)[:, None])
        return out

    def transform(self, frame: pl.DataFrame, *, source: str = "") -> np.ndarray:
        """Raw table -> float32 ``(n, n_inputs)``."""
        return self.encode(self.parse(frame, source=source))

    # -- persistence ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": ENCODER_FORMAT,
            "spec": self.spec.to_dict(),
            "numeric": list(self.numeric),
            "bins": self.bins,
            "frequencies": self.frequencies,
            "num_stats": {k: v.to_dict() for k, v in self.num_stats.items()},
            "cat_stats": {k: v.to_dict() for k, v in self.cat_stats.items()},
            "n_total": self.n_total,
            "class_counts": list(self.class_counts),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Encoder:
        if d.get("format") != ENCODER_FORMAT:
            raise EncoderError(f"not a fedids encoder (expected format {ENCODER_FORMAT!r})")
        try:
            enc = cls(
                spec=FeatureSpec.from_dict(d["spec"]),
                numeric=tuple(str(r) for r in d["numeric"]),
                bins=int(d["bins"]),
                frequencies=int(d["frequencies"]),
                num_stats={k: NumericStats.from_dict(v) for k, v in d["num_stats"].items()},
                cat_stats={k: CategoryStats.from_dict(v) for k, v in d["cat_stats"].items()},
                n_total=int(d.get("n_total", 0)),
                class_counts=tuple(int(c) for c in d.get("class_counts", ())),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise EncoderError(f"encoder description is incomplete ({exc})") from exc
        enc.validate()
        return enc

    def validate(self) -> Encoder:
        bad = [r for r in self.numeric if r not in REPRESENTATIONS]
        if bad or not self.numeric:
            raise EncoderError(
                f"encoding.numeric must list some of {REPRESENTATIONS}, got {list(self.numeric)}"
            )
        for col in self.spec.columns:
            if col.kind == "numeric" and col.name not in self.num_stats:
                raise EncoderError(f"no statistics for numeric column {col.name!r}")
            if col.kind == "categorical" and col.name not in self.cat_stats:
                raise EncoderError(f"no categories for column {col.name!r}")
        return self

    @classmethod
    def from_scaler(cls, feature_names: Sequence[str], class_names: Sequence[str], scaler: Any):
        """The pre-v2 scaler (signed log1p + standardization) as an all-numeric encoder."""
        from fedids.data.spec import ColumnSpec as _C

        spec = FeatureSpec(
            tuple(_C(n, "numeric") for n in feature_names), tuple(str(c) for c in class_names)
        )
        stats = {
            n: NumericStats(np.zeros(0), np.zeros(0), np.zeros(0), float(m), float(s))
            for n, m, s in zip(feature_names, scaler.mean, scaler.std, strict=True)
        }
        return cls(spec, ("standard",), 1, 0, stats, {}).validate()


def _numeric_option(encoding: Mapping[str, Any] | None) -> tuple[str, ...]:
    value = encoding_option(encoding, "numeric")
    reps = (value,) if isinstance(value, str) else tuple(str(v) for v in value)
    return reps


def build_encoder(
    spec: FeatureSpec, encoding: Mapping[str, Any] | None, totals: Sequence[np.ndarray]
) -> Encoder:
    """The encoder every device builds from the same federation totals (all passes)."""
    totals = check_totals(spec, encoding, totals)
    bins = int(encoding_option(encoding, "bins"))
    freqs = int(encoding_option(encoding, "frequencies"))
    keep = int(encoding_option(encoding, "categories"))
    if bins < 2 or freqs < 1 or keep < 1:
        raise EncoderError(
            f"encoding.bins must be >= 2, frequencies >= 1, categories >= 1 "
            f"(got {bins}, {freqs}, {keep})"
        )
    r = int(encoding_option(encoding, "cells_per_octave"))
    n_total, class_counts = summary_header(totals[0], spec)
    p0 = layout(spec, encoding, 0)
    num_stats: dict[str, NumericStats] = {}
    for col in spec.of_kind("numeric"):
        coarse = totals[0][p0.slices[col.name]]
        if stats_passes(encoding) == 2:
            p1 = layout(spec, encoding, 1)
            sl = p1.slices[col.name]
            grid = fine_grid(coarse, sl.stop - sl.start, r)
            lo, hi, counts = grid.lo, grid.hi, totals[1][sl]
        else:  # one cell per non-empty coarse cell
            lo_all, hi_all = coarse_bounds(r)
            lo, hi, counts = lo_all, hi_all, coarse
        num_stats[col.name] = numeric_stats_from_histogram(lo, hi, counts, bins)
    cat_stats: dict[str, CategoryStats] = {}
    for col in spec.of_kind("categorical"):
        if col.vocabulary is not None:
            cat_stats[col.name] = CategoryStats(np.arange(len(col.vocabulary), dtype=np.int64))
            continue
        hist = totals[0][p0.slices[col.name]]
        order = np.lexsort((np.arange(len(hist)), -hist))  # most frequent first, then id
        kept = order[: min(keep, int((hist > 0).sum()))]
        cat_stats[col.name] = CategoryStats(np.sort(kept).astype(np.int64))
    return Encoder(
        spec,
        _numeric_option(encoding),
        bins,
        freqs,
        num_stats,
        cat_stats,
        n_total,
        tuple(int(c) for c in class_counts),
    ).validate()
