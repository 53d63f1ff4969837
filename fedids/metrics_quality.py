"""Is the detector better than doing nothing? One rule for runs, baselines and benchmarks.

A detector that predicts the majority class for every flow can still show 99 % accuracy on
IDS data, so every result is set beside the *majority baseline*: the macro-F1 of always
predicting the federation's most frequent training class on the same validation records.
:func:`quality_warning` turns the pair into a sentence (or ``None``) that runs write into
``metrics.json`` and print under the summary table; the benchmark and ``fedids baseline``
use the very same rule.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: The least improvement over the baseline that counts as "learned something": 0.05
#: macro-F1, or a tenth of the headroom above the baseline when that is larger.
MIN_MARGIN = 0.05
HEADROOM_SHARE = 0.10


def macro_f1_from_confusion(cm: np.ndarray) -> float:
    """Macro-F1 over the classes present in truth or predictions (as ``fedids.metrics``)."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    support, predicted = cm.sum(axis=1), cm.sum(axis=0)
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    active = denom > 0
    return float(f1[active].mean()) if active.any() else 0.0


def majority_class(class_counts: Sequence[int]) -> int:
    """The most frequent class (ties: the lower index, i.e. benign first)."""
    counts = np.asarray(class_counts, dtype=np.int64)
    if counts.sum() <= 0:
        raise ValueError("no records: there is no majority class")
    return int(np.argmax(counts))


def majority_macro_f1(support: Sequence[int], majority: int) -> float:
    """Macro-F1 of predicting ``majority`` for every record of a split whose true class
    counts are ``support`` (e.g. the row sums of the validation confusion matrix)."""
    s = np.asarray(support, dtype=np.int64)
    cm = np.zeros((len(s), len(s)), dtype=np.int64)
    cm[:, majority] = s
    return macro_f1_from_confusion(cm)


def chance_macro_f1(support: Sequence[int]) -> float:
    """Expected macro-F1 of guessing at random with the true class frequencies: exactly
    1 / (classes present). It can beat the majority baseline (binary: 0.5 against about
    0.38), so a detector that guesses must not pass for one that learned."""
    present = int((np.asarray(support) > 0).sum())
    return 1.0 / present if present else 0.0


def required_margin(baseline_macro_f1: float) -> float:
    """How much better than the baseline a model must be to count as having learned."""
    return max(MIN_MARGIN, HEADROOM_SHARE * (1.0 - float(baseline_macro_f1)))


def quality_warning(
    final_macro_f1: float,
    baseline_macro_f1: float,
    *,
    support: Sequence[int] | None = None,
    reference_macro_f1: float | None = None,
    synthetic: bool = False,
) -> str | None:
    """One sentence when the final model is not clearly better than the majority baseline
    (or than random guessing, when ``support``, the validation records per class, is
    given), else ``None``.

    ``reference_macro_f1`` (optional, e.g. a centralized random forest) tells apart "the
    data carries no per-record signal" from "the federation failed to learn it".
    """
    final, base = float(final_macro_f1), float(baseline_macro_f1)
    chance = chance_macro_f1(support) if support is not None else 0.0
    bar = max(base, chance)
    needed = bar + required_margin(bar)
    if final >= needed:
        return None
    what = "synthetic data" if synthetic else "this data"
    versus = f"always predicting the majority class ({base:.3f}"
    if chance > base:
        versus += f") or guessing at random ({chance:.3f}"
    sentence = (
        f"The detector learned nothing useful from {what}: its final macro-F1 "
        f"({final:.3f}) is not clearly better than {versus}; at least {needed:.3f} was needed)"
    )
    if reference_macro_f1 is None:
        return sentence + "."
    ref = float(reference_macro_f1)
    if ref < needed:
        return sentence + (
            f"; a centralized reference does no better ({ref:.3f}), so single records "
            "carry little signal here."
        )
    return sentence + f", while a centralized reference reaches {ref:.3f}."
