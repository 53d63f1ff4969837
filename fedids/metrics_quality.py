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


def required_margin(baseline_macro_f1: float) -> float:
    """How much better than the baseline a model must be to count as having learned."""
    return max(MIN_MARGIN, HEADROOM_SHARE * (1.0 - float(baseline_macro_f1)))


def quality_warning(
    final_macro_f1: float,
    baseline_macro_f1: float,
    *,
    reference_macro_f1: float | None = None,
    synthetic: bool = False,
) -> str | None:
    """One sentence when the final model is not clearly better than the majority baseline,
    else ``None``.

    ``reference_macro_f1`` (optional, e.g. a centralized random forest) tells apart "the
    data carries no per-record signal" from "the federation failed to learn it".
    """
    final, base = float(final_macro_f1), float(baseline_macro_f1)
    margin = required_margin(base)
    if final >= base + margin:
        return None
    what = "synthetic data" if synthetic else "this data"
    sentence = (
        f"The detector learned nothing useful from {what}: its final macro-F1 "
        f"({final:.3f}) is not clearly better than always predicting the majority class "
        f"({base:.3f}; at least {base + margin:.3f} was needed)"
    )
    if reference_macro_f1 is None:
        return sentence + "."
    ref = float(reference_macro_f1)
    if ref < base + margin:
        return sentence + (
            f"; a centralized reference does no better ({ref:.3f}), so single records "
            "carry little signal here."
        )
    return sentence + f", while a centralized reference reaches {ref:.3f}."
