"""A round's record in ``metrics.json``: quality from the federation-wide counts, plus costs.

Quality figures come from the sum of the devices' validation confusion matrices (exact over
the union of their validation splits); beside them, ``baseline_macro_f1`` is what always
predicting the majority class of those same records would score, so a detector that
learned nothing is visible in every round.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedids.metrics import from_confusion
from fedids.metrics_quality import majority_class, majority_macro_f1
from fedids.metrics_quality import quality_warning as _quality_warning
from fedids.protocol import EvalTotals


def majority_baseline_macro_f1(cm: np.ndarray) -> float:
    """Macro-F1 of always predicting the most frequent class of ``cm``'s records (the
    server sees only validation counts; stratified splits share the training majority)."""
    support = np.asarray(cm, dtype=np.int64).sum(axis=1)
    if support.sum() == 0:
        return 0.0
    return float(majority_macro_f1(support, majority_class(support)))


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else 0.0


@dataclass
class RoundCosts:
    """What a round cost, collected while it runs (the quality comes later in Paillier mode)."""

    round: int
    started: float
    fit_seconds: float = 0.0
    evaluate_seconds: float = 0.0
    aggregate_seconds: float = 0.0
    upload_bytes: list[int] = field(default_factory=list)
    download_bytes: int = 0
    fit_clients: int = 0
    fit_failures: int = 0
    rejected: int = 0
    evaluate_clients: int = 0
    evaluate_failures: int = 0
    train_seconds: list[float] = field(default_factory=list)
    encrypt_seconds: list[float] = field(default_factory=list)
    decrypt_seconds: list[float] = field(default_factory=list)
    evaluate_decrypt_seconds: list[float] = field(default_factory=list)
    device_errors: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def round_record(
    costs: RoundCosts, totals: EvalTotals, class_names: list[str], round_seconds: float
) -> dict[str, Any]:
    record: dict[str, Any] = {"round": costs.round, **from_confusion(totals.confusion, class_names)}
    record.update(
        {
            "baseline_macro_f1": majority_baseline_macro_f1(totals.confusion),
            "loss": totals.loss,
            "clipped_values": totals.clipped,
            "round_seconds": round_seconds,
            "upload_bytes_per_client": _mean([float(b) for b in costs.upload_bytes]),
            "upload_bytes_by_client": list(costs.upload_bytes),
            "download_bytes": costs.download_bytes,
            "fit_clients": costs.fit_clients,
            "fit_failures": costs.fit_failures,
            "rejected_updates": costs.rejected,
            "evaluate_clients": costs.evaluate_clients,
            "evaluate_failures": costs.evaluate_failures,
            "train_seconds": _mean(costs.train_seconds),
            "encrypt_seconds": _mean(costs.encrypt_seconds),
            "aggregate_seconds": costs.aggregate_seconds,
            "decrypt_seconds": _mean(costs.decrypt_seconds),
            "evaluate_decrypt_seconds": _mean(costs.evaluate_decrypt_seconds),
            "device_errors": list(costs.device_errors),
            **costs.extra,
        }
    )
    return record


def quality_warning(rounds: list[dict[str, Any]], *, synthetic: bool = False) -> str | None:
    """One sentence when the final model is not clearly better than the majority baseline
    (the rule of :mod:`fedids.metrics_quality`, shared with benchmarks and baselines)."""
    if not rounds:
        return None
    last = rounds[-1]
    return _quality_warning(
        float(last["macro_f1"]), float(last.get("baseline_macro_f1", 0.0)), synthetic=synthetic
    )
