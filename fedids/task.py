"""Local training and evaluation on one device's arrays (no Flower here).

Class imbalance (WUSTL is 92.7 % normal; Backdoor is 0.02 %) is handled with class
weights in the loss. With ``class_counts`` (the federation's class counts, from the
stats pass header) every device weighs classes alike; without, the device's own labels
are used. Either way over the global class list, so an absent class never divides by 0.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def class_weights(y: np.ndarray, n_classes: int, scheme: str) -> torch.Tensor:
    """Loss weights per class from labels: ``none``, ``inverse`` or ``sqrt_inverse``."""
    return class_weights_from_counts(np.bincount(y, minlength=n_classes), scheme)


def class_weights_from_counts(counts: np.ndarray, scheme: str) -> torch.Tensor:
    """Loss weights per class from class counts (e.g. the federation's totals)."""
    counts = np.asarray(counts, dtype=np.float64)
    n_classes = len(counts)
    if scheme == "none":
        return torch.ones(n_classes)
    present = counts > 0
    w = np.zeros(n_classes)
    freq = counts[present] / counts.sum()
    w[present] = 1.0 / freq if scheme == "inverse" else 1.0 / np.sqrt(freq)
    if scheme not in ("inverse", "sqrt_inverse"):
        raise ValueError(
            f"train.class_weighting must be none, inverse or sqrt_inverse, got {scheme!r}"
        )
    w[present] /= w[present].mean()
    w[~present] = 1.0  # absent classes keep a neutral weight
    return torch.tensor(w, dtype=torch.float32)


def train(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    n_classes: int,
    weighting: str,
    seed: int,
    class_counts: np.ndarray | None = None,
) -> dict[str, float]:
    """Train in place with Adam; returns the mean loss of the first and the last epoch.

    ``class_counts``: the federation's class counts for the loss weights (default: this
    device's labels)."""
    if len(x) == 0:
        raise ValueError("cannot train on an empty training split")
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # dropout draws from the global generator
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    if class_counts is not None:
        if len(class_counts) != n_classes:
            raise ValueError(f"class_counts has {len(class_counts)} entries, need {n_classes}")
        weights = class_weights_from_counts(np.asarray(class_counts), weighting)
    else:
        weights = class_weights(y, n_classes, weighting)
    criterion = nn.CrossEntropyLoss(weight=weights)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    model.train()
    epoch_losses = []
    for _ in range(epochs):
        order = torch.randperm(len(xt), generator=gen)
        total, seen = 0.0, 0
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            opt.zero_grad(set_to_none=True)
            loss = criterion(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            seen += len(idx)
        epoch_losses.append(total / seen)
    return {"loss_first_epoch": epoch_losses[0], "loss_last_epoch": epoch_losses[-1]}


@torch.no_grad()
def loss_of(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Unweighted mean cross-entropy (for reporting)."""
    model.eval()
    logits = model(torch.from_numpy(x))
    return float(nn.functional.cross_entropy(logits, torch.from_numpy(y)))


@torch.no_grad()
def confusion(model: nn.Module, x: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """Confusion matrix (rows: true class, columns: predicted class) of the model on x."""
    model.eval()
    preds = []
    for start in range(0, len(x), 65536):
        preds.append(model(torch.from_numpy(x[start : start + 65536])).argmax(dim=1).numpy())
    pred = np.concatenate(preds) if preds else np.zeros(0, dtype=np.int64)
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (y, pred), 1)
    return cm
