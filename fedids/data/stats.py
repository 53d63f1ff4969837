"""Federation-wide statistics from per-device integer summaries.

Every device turns its training split into fixed-length vectors of non-negative counts
(:func:`local_summary`); the federation sums them (homomorphically in Paillier mode, so
nobody but the devices sees the totals, and nobody at all sees one device's vector); every
device then builds the same encoder from the same totals (:func:`build_encoder`). No raw
value and no per-device statistic is needed by anyone else.

Pass 0 (always): ``[n_train, class counts...]``, then per numeric column a histogram over
a *fixed* coarse grid (base-2 logarithmic: edges ``+/-(2**(k/r) - 1)``, ``r`` cells per
octave, up to ``2**40``), then per hashed categorical column a histogram of hash ids.
Pass 1 (``encoding.refine``, the default): ``[n_train]``, then per numeric column a
histogram over fine cells that every device derives from the pass-0 totals alone: each
non-empty coarse cell is cut into equal-width sub-cells, as many as its share of the
records (at least one), so the fine histogram resolves about ``1 / fine_cells`` of the
records per cell wherever the data is. Quantile edges and the quantile transform come
from it (:mod:`fedids.data.encoder`).

Every entry of a device's vector is at most its ``n_train`` (each record adds 1 to one
cell per column): the per-device bound the packed Paillier count codec needs is
``n_train < 2**32`` (:data:`MAX_RECORDS`), checked here. Grid edges are exact binary
arithmetic (powers of two times fixed constants), so they are bit-identical on every
machine.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from fedids.data.spec import FeatureSpec

#: Largest n_train a summary may count (every entry must stay below 2**32).
MAX_RECORDS = 2**32 - 1

#: Octaves the coarse grid covers on each side of 0: |x| up to 2**40 - 1 (about 1.1e12);
#: larger magnitudes are counted in the outermost cell.
OCTAVES = 40

DEFAULTS: dict[str, Any] = {
    "numeric": ["quantile", "periodic"],
    "bins": 16,
    "frequencies": 8,
    "categories": 16,
    "refine": True,
    "cells_per_octave": 2,
    "fine_cells": 1024,
    "fine_budget": 16384,
}


class StatsError(ValueError):
    """Summaries or totals that do not fit the layout (the message says which and why)."""


def encoding_option(encoding: Mapping[str, Any] | None, key: str) -> Any:
    """``encoding[key]``, or the default when the config does not set it."""
    if encoding is not None and encoding.get(key) is not None:
        return encoding[key]
    return DEFAULTS[key]


def stats_passes(encoding: Mapping[str, Any] | None) -> int:
    """How many summary passes the encoding needs (1 or 2): known from the config alone."""
    return 2 if bool(encoding_option(encoding, "refine")) else 1


# --- the grids -----------------------------------------------------------------------------


@lru_cache(maxsize=8)
def coarse_edges(cells_per_octave: int) -> np.ndarray:
    """Inner edges of the coarse grid (ascending); the grid has ``len + 1`` cells.

    Edge ``k`` (``k = -K..K``, ``K = OCTAVES * r``) is ``sign(k) * (2**(|k|/r) - 1)``;
    ``2**(|k|/r)`` is ``ldexp(m, |k| // r)`` with ``m`` a fixed mantissa, so exact.
    """
    r = int(cells_per_octave)
    if r not in (1, 2, 4):
        raise StatsError(f"encoding.cells_per_octave must be 1, 2 or 4, got {r}")
    mantissas = [1.0, 1.189207115002721, 1.4142135623730951, 1.681792830507429]
    step = {1: 4, 2: 2, 4: 1}[r]
    k = np.arange(0, OCTAVES * r + 1)
    mags = np.array([math.ldexp(mantissas[(i % r) * step], int(i // r)) - 1.0 for i in k])
    return np.concatenate([-mags[:0:-1], mags])  # -(2**40-1) .. 0 .. 2**40-1


def n_coarse(cells_per_octave: int) -> int:
    return len(coarse_edges(cells_per_octave)) + 1


def coarse_cell(x: np.ndarray, cells_per_octave: int) -> np.ndarray:
    """Coarse cell index of each value (0 .. n_coarse - 1)."""
    return np.searchsorted(coarse_edges(cells_per_octave), x, side="right")


def coarse_bounds(cells_per_octave: int) -> tuple[np.ndarray, np.ndarray]:
    """Finite (lower, upper) bounds of every coarse cell; the outer cells are closed at
    the outermost edge plus one octave (values beyond are clipped into their last sub-cell)."""
    e = coarse_edges(cells_per_octave)
    lo = np.concatenate([[2 * e[0] - 1.0], e])
    hi = np.concatenate([e, [2 * e[-1] + 1.0]])
    return lo, hi


def fine_cells_per_column(encoding: Mapping[str, Any] | None, n_numeric: int) -> int:
    """Fine cells of each numeric column: the budget shared, within [coarse cells, max]."""
    g0 = n_coarse(int(encoding_option(encoding, "cells_per_octave")))
    most = int(encoding_option(encoding, "fine_cells"))
    budget = int(encoding_option(encoding, "fine_budget"))
    share = budget // max(n_numeric, 1)
    return max(g0, min(most, share))


def allocate_subcells(coarse_totals: np.ndarray, m: int) -> np.ndarray:
    """Sub-cells per coarse cell (sum ``m``): one per non-empty cell, the rest by records.

    Integer arithmetic only (largest remainder, ties to the lower cell), so every device
    computes the same allocation from the same totals.
    """
    t = np.asarray(coarse_totals, dtype=np.int64)
    nonempty = t > 0
    k = int(nonempty.sum())
    out = np.zeros(len(t), dtype=np.int64)
    if k == 0:
        return out
    if k > m:  # pragma: no cover - fine_cells_per_column guarantees m >= n_coarse
        raise StatsError(f"{k} non-empty coarse cells but only {m} fine cells")
    extra = m - k
    total = int(t.sum())
    share = t * extra
    base = share // total
    rem = share - base * total
    left = extra - int(base.sum())
    order = np.lexsort((np.arange(len(t)), -rem))  # largest remainder first, then index
    base[order[:left]] += 1
    out[nonempty] = 1
    return out + base


@dataclass(frozen=True)
class FineGrid:
    """One numeric column's fine cells: ``bounds[i] = (lo, hi)`` of cell ``i``."""

    lo: np.ndarray  # float64 (m,)
    hi: np.ndarray  # float64 (m,)
    coarse_of: np.ndarray  # int64 (m,), coarse cell each fine cell lies in
    offset: np.ndarray  # int64 (n_coarse,), first fine cell of each coarse cell
    count: np.ndarray  # int64 (n_coarse,), fine cells of each coarse cell

    def cell(self, x: np.ndarray, cells_per_octave: int) -> np.ndarray:
        """Fine cell of each value (values in empty coarse cells go to the nearest cell)."""
        c = coarse_cell(x, cells_per_octave)
        n = self.count[c]
        if (n == 0).any():  # only at detection/validation time; never for counted data
            filled = np.flatnonzero(self.count > 0)
            pos = np.clip(np.searchsorted(filled, c[n == 0]), 0, len(filled) - 1)
            c = c.copy()
            c[n == 0] = filled[pos]
            n = self.count[c]
        clo, chi = coarse_bounds(cells_per_octave)
        a, b = clo[c], chi[c]
        with np.errstate(invalid="ignore", divide="ignore"):
            sub = np.floor((x - a) / (b - a) * n)
        sub = np.clip(np.nan_to_num(sub), 0, n - 1).astype(np.int64)
        return self.offset[c] + sub


def fine_grid(coarse_totals: np.ndarray, m: int, cells_per_octave: int) -> FineGrid:
    """The fine cells derived from one column's pass-0 totals."""
    count = allocate_subcells(coarse_totals, m)
    offset = np.concatenate([[0], np.cumsum(count)[:-1]]).astype(np.int64)
    clo, chi = coarse_bounds(cells_per_octave)
    coarse_of = np.repeat(np.arange(len(count)), count)
    k = np.arange(len(coarse_of)) - offset[coarse_of]
    n = count[coarse_of].astype(np.float64)
    width = chi[coarse_of] - clo[coarse_of]
    lo = clo[coarse_of] + width * (k / n)
    hi = np.where(k + 1 == n, chi[coarse_of], clo[coarse_of] + width * ((k + 1) / n))
    return FineGrid(lo, hi, coarse_of, offset, count)


# --- layout of the summary vectors ----------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """Where each column's histogram sits in the vector of one pass."""

    length: int
    slices: dict[str, slice]


def _hashed(spec: FeatureSpec) -> list[str]:
    return [c.name for c in spec.of_kind("categorical") if c.vocabulary is None]


def layout(spec: FeatureSpec, encoding: Mapping[str, Any] | None, pass_index: int) -> Layout:
    """The fixed layout of pass ``pass_index``'s vector for this spec and encoding."""
    numeric = [c.name for c in spec.of_kind("numeric")]
    slices: dict[str, slice] = {}
    if pass_index == 0:
        pos = 1 + len(spec.class_names)
        g0 = n_coarse(int(encoding_option(encoding, "cells_per_octave")))
        for name in numeric:
            slices[name] = slice(pos, pos + g0)
            pos += g0
        for col in spec.of_kind("categorical"):
            if col.vocabulary is None:
                slices[col.name] = slice(pos, pos + col.hash_space)
                pos += col.hash_space
        return Layout(pos, slices)
    if pass_index == 1 and stats_passes(encoding) == 2:
        m = fine_cells_per_column(encoding, len(numeric))
        pos = 1
        for name in numeric:
            slices[name] = slice(pos, pos + m)
            pos += m
        return Layout(pos, slices)
    raise StatsError(
        f"stats pass {pass_index} does not exist (this encoding has {stats_passes(encoding)})"
    )


def summary_lengths(spec: FeatureSpec, encoding: Mapping[str, Any] | None) -> list[int]:
    """Length of every pass's vector (what one device sends per pass)."""
    return [layout(spec, encoding, p).length for p in range(stats_passes(encoding))]


def summary_header(totals0: np.ndarray, spec: FeatureSpec | int) -> tuple[int, np.ndarray]:
    """``(N, class counts)`` from the pass-0 totals: the federation's record count (for
    FedAvg shares) and its class frequencies (for class weights)."""
    n_classes = spec if isinstance(spec, int) else len(spec.class_names)
    t = np.asarray(totals0, dtype=np.int64)
    if len(t) < 1 + n_classes:
        raise StatsError(f"pass-0 totals have {len(t)} entries, need at least {1 + n_classes}")
    n_total, counts = int(t[0]), t[1 : 1 + n_classes].copy()
    if int(counts.sum()) != n_total:
        raise StatsError(
            f"pass-0 totals are inconsistent: {n_total} records but class counts sum to "
            f"{int(counts.sum())}"
        )
    return n_total, counts


def _check_totals(
    spec: FeatureSpec, encoding: Mapping[str, Any] | None, totals: Sequence[np.ndarray]
) -> list[np.ndarray]:
    out = []
    for p, t in enumerate(totals):
        arr = np.asarray(t)
        want = layout(spec, encoding, p).length
        if arr.ndim != 1 or len(arr) != want:
            raise StatsError(
                f"stats pass {p}: totals have shape {arr.shape}, expected ({want},) for "
                f"layout {spec.digest()}"
            )
        if not np.issubdtype(arr.dtype, np.integer) or (arr < 0).any():
            raise StatsError(f"stats pass {p}: totals must be non-negative integers")
        out.append(arr.astype(np.int64))
    if len(out) > 1 and out[1][0] != out[0][0]:
        raise StatsError(
            f"stats passes counted different records ({out[0][0]} then {out[1][0]}): "
            "a device joined or left between passes; restart the run"
        )
    return out


def local_summary(
    spec: FeatureSpec,
    encoding: Mapping[str, Any] | None,
    split: Any,
    pass_index: int,
    earlier_totals: Sequence[np.ndarray] = (),
) -> np.ndarray:
    """This device's count vector for pass ``pass_index`` (int64, >= 0, fixed length).

    ``split`` is a :class:`fedids.data.table.Split` (raw frame + labels) of the device's
    training records; ``earlier_totals`` are the federation totals of passes before this one.
    """
    lay = layout(spec, encoding, pass_index)
    n = len(split)
    if n > MAX_RECORDS:
        raise StatsError(f"{n} training records: a summary can count at most {MAX_RECORDS}")
    x = split.parsed(spec)
    out = np.zeros(lay.length, dtype=np.int64)
    r = int(encoding_option(encoding, "cells_per_octave"))
    if pass_index == 0:
        out[0] = n
        y = np.asarray(split.labels, dtype=np.int64)
        if len(y) and (y.min() < 0 or y.max() >= len(spec.class_names)):
            raise StatsError("labels out of range for the spec's class list")
        out[1 : 1 + len(spec.class_names)] = np.bincount(y, minlength=len(spec.class_names))
        for j, col in enumerate(spec.columns):
            sl = lay.slices.get(col.name)
            if sl is None:
                continue
            if col.kind == "numeric":
                idx = coarse_cell(x[:, j], r)
            else:
                idx = x[:, j].astype(np.int64)
            out[sl] = np.bincount(idx, minlength=sl.stop - sl.start)
        return out
    (t0,) = _check_totals(spec, encoding, earlier_totals[:1])
    out[0] = n
    p0 = layout(spec, encoding, 0)
    for j, col in enumerate(spec.columns):
        sl = lay.slices.get(col.name)
        if sl is None:
            continue
        grid = fine_grid(t0[p0.slices[col.name]], sl.stop - sl.start, r)
        out[sl] = np.bincount(grid.cell(x[:, j], r), minlength=sl.stop - sl.start)
    return out


def pooled_totals(
    spec: FeatureSpec, encoding: Mapping[str, Any] | None, splits: Sequence[Any]
) -> list[np.ndarray]:
    """The totals a federation of ``splits`` would compute, summed here in the clear.

    The in-process runner, tests and centralized baselines use this, so they build their
    encoder with exactly the code and arithmetic a federation uses.
    """
    totals: list[np.ndarray] = []
    for p in range(stats_passes(encoding)):
        vectors = [local_summary(spec, encoding, s, p, totals) for s in splits]
        totals.append(np.sum(vectors, axis=0).astype(np.int64))
    return totals


def check_totals(
    spec: FeatureSpec, encoding: Mapping[str, Any] | None, totals: Sequence[np.ndarray]
) -> list[np.ndarray]:
    """Totals validated against the layout (count, lengths, sign, consistent passes)."""
    if len(totals) != stats_passes(encoding):
        raise StatsError(
            f"expected totals of {stats_passes(encoding)} stats pass(es), got {len(totals)}"
        )
    return _check_totals(spec, encoding, totals)
