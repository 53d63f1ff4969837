"""Feature scaling for flow records.

Flow features span many orders of magnitude (bytes, rates, jitter), so values are
first compressed with a signed ``log1p`` and then standardized. The scaler is fitted
on one device's own training split only (nothing about other devices' data leaks in)
and travels inside ``model.pt`` so that detection scales flows exactly as training did.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def signed_log1p(x: np.ndarray) -> np.ndarray:
    """sign(x) * log(1 + |x|), elementwise, in float32."""
    x = np.asarray(x, dtype=np.float32)
    return np.sign(x) * np.log1p(np.abs(x))


@dataclass(frozen=True)
class Scaler:
    """Signed-log1p then standardization; ``mean``/``std`` are per feature."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> Scaler:
        if len(x) == 0:
            raise ValueError("cannot fit a scaler on an empty training split")
        z = signed_log1p(x)
        mean = z.mean(axis=0)
        std = z.std(axis=0)
        std = np.where(std < 1e-6, 1.0, std)  # constant columns stay at 0 after centring
        return cls(mean.astype(np.float32), std.astype(np.float32))

    def transform(self, x: np.ndarray) -> np.ndarray:
        if x.shape[1] != len(self.mean):
            raise ValueError(f"expected {len(self.mean)} features, got {x.shape[1]}")
        return ((signed_log1p(x) - self.mean) / self.std).astype(np.float32)

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, list[float]]) -> Scaler:
        return cls(np.asarray(d["mean"], np.float32), np.asarray(d["std"], np.float32))
