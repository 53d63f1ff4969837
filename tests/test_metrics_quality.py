"""The one rule that says whether a detector learned anything."""

import numpy as np
import pytest

from fedids.metrics import from_confusion
from fedids.metrics_quality import (
    macro_f1_from_confusion,
    majority_class,
    majority_macro_f1,
    quality_warning,
)


def test_macro_f1_matches_the_run_metrics():
    cm = np.array([[50, 3, 0], [4, 20, 1], [0, 0, 0]])
    assert macro_f1_from_confusion(cm) == pytest.approx(
        from_confusion(cm, ["a", "b", "c"])["macro_f1"]
    )


def test_majority_baseline():
    assert majority_class([10, 30, 30]) == 1
    # predicting class 0 for 6 + 2 + 2 records: F1_0 = 12/16, classes 1 and 2 score 0
    assert majority_macro_f1([6, 2, 2], 0) == pytest.approx((12 / 16) / 3)
    assert majority_macro_f1([6, 0, 0], 0) == 1.0


def test_warning_rule():
    assert quality_warning(0.93, 0.069) is None
    learned_nothing = quality_warning(0.08, 0.078)
    assert learned_nothing is not None and "learned nothing" in learned_nothing
    assert "0.080" in learned_nothing and "0.078" in learned_nothing
    no_signal = quality_warning(0.08, 0.078, reference_macro_f1=0.079)
    assert "centralized reference does no better" in no_signal
    failed = quality_warning(0.08, 0.078, reference_macro_f1=0.78)
    assert "reaches 0.780" in failed
    assert "synthetic data" in quality_warning(0.1, 0.1, synthetic=True)
    # the margin: 0.05, or a tenth of the headroom above the baseline
    assert quality_warning(0.16, 0.069) is not None and quality_warning(0.17, 0.069) is None
    assert quality_warning(0.89, 0.85) is not None and quality_warning(0.90, 0.85) is None
