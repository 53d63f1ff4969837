"""Helpers shared by the data-layer tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_text(path: Path, text: str, *, bom: bool = False) -> Path:
    """Write ``text`` as UTF-8 (optionally with a byte-order mark) and return the path."""
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def best_threshold_balanced_accuracy(x: np.ndarray, positive: np.ndarray) -> float:
    """Best balanced accuracy of any rule ``x <= t`` or ``x > t`` for predicting ``positive``.

    Thresholds are only placed between distinct values, so tied values are never split.
    """
    order = np.argsort(x, kind="stable")
    xs, ps = x[order], positive[order]
    n_pos, n_neg = ps.sum(), len(ps) - ps.sum()
    last_of_value = np.r_[xs[1:] != xs[:-1], True]
    pos_below = np.r_[0, np.cumsum(ps)[last_of_value]]
    neg_below = np.r_[0, np.cumsum(~ps)[last_of_value]]
    ba = 0.5 * (pos_below / n_pos + (n_neg - neg_below) / n_neg)
    return float(max(ba.max(), (1 - ba).max()))
