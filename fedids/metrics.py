"""Detection metrics from a confusion matrix.

Devices send confusion matrices (counts, not records); the server adds them, so the
federated figures are exact over the union of the devices' validation splits.
Accuracy is saturated on IDS data; macro-F1, per-class recall and the false-positive
rate on normal traffic are the figures that matter.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)


def from_confusion(cm: np.ndarray, class_names: list[str], normal_index: int = 0) -> dict[str, Any]:
    """Accuracy, macro-F1 (over classes present in truth or predictions), per-class P/R/F1, FPR."""
    cm = np.asarray(cm, dtype=np.int64)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    precision = _ratio(tp, predicted)
    recall = _ratio(tp, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    active = (support + predicted) > 0
    total = cm.sum()
    normal_total = cm[normal_index].sum()
    false_alarms = normal_total - cm[normal_index, normal_index]
    return {
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "macro_f1": float(f1[active].mean()) if active.any() else 0.0,
        "false_positive_rate": float(false_alarms / normal_total) if normal_total else 0.0,
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(class_names)
        },
        "confusion_matrix": cm.tolist(),
        "n_records": int(total),
    }
