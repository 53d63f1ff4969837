"""Local training lowers the loss; class weights handle absent classes."""

import numpy as np
import torch

from fedids.model import build_model, get_weights
from fedids.task import class_weights, confusion, loss_of, train


def _toy(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1.5).astype(np.int64)
    return x, y


def test_training_lowers_the_loss():
    x, y = _toy()
    model = build_model(6, 3, [16], 0.0, seed=1)
    before = loss_of(model, x, y)
    train(
        model,
        x,
        y,
        epochs=3,
        batch_size=64,
        lr=0.01,
        weight_decay=0.0,
        n_classes=3,
        weighting="sqrt_inverse",
        seed=0,
    )
    after = loss_of(model, x, y)
    assert after < 0.6 * before
    cm = confusion(model, x, y, 3)
    assert cm.sum() == len(y)
    assert np.trace(cm) / len(y) > 0.9


def test_same_seed_same_initial_weights_and_training():
    x, y = _toy()
    a, b = build_model(6, 3, [8], 0.1, seed=5), build_model(6, 3, [8], 0.1, seed=5)
    for m in (a, b):
        train(
            m,
            x,
            y,
            epochs=1,
            batch_size=128,
            lr=0.01,
            weight_decay=0.0,
            n_classes=3,
            weighting="none",
            seed=3,
        )
    for wa, wb in zip(get_weights(a), get_weights(b), strict=True):
        np.testing.assert_array_equal(wa, wb)


def test_class_weights_absent_class_neutral():
    w = class_weights(np.array([0, 0, 0, 1]), 3, "inverse")
    assert torch.isfinite(w).all()
    assert w[1] > w[0]
    assert w[2] == 1.0


def test_federation_class_counts_set_the_weights():
    x, y = _toy(500)
    counts = np.array([1000, 10, 10])
    a, b = build_model(6, 3, [8], 0.0, seed=5), build_model(6, 3, [8], 0.0, seed=5)
    kw = dict(epochs=1, batch_size=64, lr=0.01, weight_decay=0.0, n_classes=3,
              weighting="inverse", seed=1)  # fmt: skip
    train(a, x, y, class_counts=counts, **kw)
    train(b, x, y, **kw)
    assert any(
        not np.array_equal(wa, wb) for wa, wb in zip(get_weights(a), get_weights(b), strict=True)
    )
    from fedids.task import class_weights_from_counts

    w = class_weights_from_counts(counts, "inverse")
    assert w[1] == w[2] and w[1] > 10 * w[0]
