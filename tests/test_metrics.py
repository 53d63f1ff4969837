"""Metrics from confusion matrices."""

import numpy as np
import pytest

from fedids.metrics import from_confusion


def test_per_class_and_macro_f1():
    cm = np.array([[90, 10, 0], [5, 15, 0], [0, 0, 0]])
    m = from_confusion(cm, ["normal", "DoS", "Backdoor"])
    assert m["accuracy"] == pytest.approx(105 / 120)
    p_dos, r_dos = 15 / 25, 15 / 20
    assert m["per_class"]["DoS"]["precision"] == pytest.approx(p_dos)
    assert m["per_class"]["DoS"]["recall"] == pytest.approx(r_dos)
    f1_n = 2 * (90 / 95) * (90 / 100) / (90 / 95 + 90 / 100)
    f1_d = 2 * p_dos * r_dos / (p_dos + r_dos)
    # a class absent from truth and predictions does not count in macro-F1
    assert m["macro_f1"] == pytest.approx((f1_n + f1_d) / 2)
    assert m["false_positive_rate"] == pytest.approx(10 / 100)
    assert m["confusion_matrix"] == cm.tolist()


def test_missed_class_counts_as_zero_f1():
    cm = np.array([[10, 0], [3, 0]])
    m = from_confusion(cm, ["normal", "attack"])
    assert m["per_class"]["attack"]["recall"] == 0.0
    assert m["macro_f1"] == pytest.approx((2 * (10 / 13) * 1 / (10 / 13 + 1)) / 2)
