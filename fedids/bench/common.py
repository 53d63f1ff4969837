"""Small helpers shared by the bench's parts: clocks, byte counts, exact FedAvg, best-of."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from io import BytesIO
from typing import Any

import numpy as np


def now() -> float:
    return time.perf_counter()


def upload_bytes(arrays: Sequence[np.ndarray], metrics: dict[str, Any] | None = None) -> int:
    """Bytes of the arrays as Flower ships them (.npy each), plus metric keys and values."""
    total = 0
    for a in arrays:
        buf = BytesIO()
        np.save(buf, np.asarray(a), allow_pickle=False)
        total += len(buf.getvalue())
    for k, v in (metrics or {}).items():
        total += len(str(k)) + len(str(v))
    return total


def exact_fedavg(
    updates: Sequence[Sequence[np.ndarray]], weights: Sequence[float], clip: float | None = None
) -> list[np.ndarray]:
    """``sum_k w_k x_k / sum_k w_k`` per array in float64 (of the clipped values if ``clip``)."""
    total = float(sum(weights))
    out = []
    for i in range(len(updates[0])):
        acc = np.zeros(np.shape(updates[0][i]), dtype=np.float64)
        for u, w in zip(updates, weights, strict=True):
            x = np.asarray(u[i], dtype=np.float64)
            acc += (np.clip(x, -clip, clip) if clip is not None else x) * (float(w) / total)
        out.append(acc)
    return out


def max_abs_error(out: Sequence[np.ndarray], exact: Sequence[np.ndarray]) -> float:
    pairs = zip(out, exact, strict=True)
    return max(float(np.abs(np.asarray(o, np.float64) - e).max()) for o, e in pairs)


def best_of(measure: Callable[[], dict[str, Any]], repeats: int, key: str) -> dict[str, Any]:
    """The fastest of ``repeats`` runs by ``key``: background load only ever adds time."""
    runs = [measure() for _ in range(max(1, repeats))]
    return min(runs, key=lambda r: r[key]) | {"repeats": len(runs)}


def medians(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per-key median of numeric figures over interleaved runs (other keys: the first run's)."""
    out = dict(runs[0])
    for key, value in runs[0].items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = statistics.median(r[key] for r in runs)
    return out | {"repeats": len(runs)}


def model_shapes(n_params: int) -> list[tuple[int, ...]]:
    """An MLP-like list of shapes holding exactly ``n_params`` values (for size sweeps)."""
    if n_params == 5125:
        return [(41, 64), (64,), (64,), (64,), (64, 32), (32,), (32,), (32,), (32, 5), (5,)]
    rows = max(1, n_params // 512)
    rest = n_params - rows * 512
    return [(rows, 512)] + ([(rest,)] if rest else [])
