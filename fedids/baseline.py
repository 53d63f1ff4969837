"""Centralized references for a federated run: what the same data allows without federation.

``fedids baseline`` and ``benchmarks/real_data.py`` call :func:`references`: the devices'
splits are loaded exactly as a run loads them (same partitioning, same train/validation
split), pooled, and three references are trained and scored on the union of the devices'
validation splits (the records a run's figures are computed on):

* majority: always the federation's most frequent training class;
* forest: a random forest (scikit-learn, the optional ``baseline`` extra), on parsed
  numbers with categorical columns one-hot;
* torch: the run's own model and encoder, trained centrally for rounds x local epochs.

The encoder is built with :func:`fedids.data.pooled_totals`: the same code and arithmetic a
federation uses, so the torch reference differs from a run only by being centralized.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from fedids.data import DeviceTable, Encoder, Split, build_encoder, load_device_table
from fedids.data.stats import pooled_totals
from fedids.metrics_quality import macro_f1_from_confusion, majority_class, majority_macro_f1

#: Trees of the random-forest reference (as in the TON_IoT README's reference figures).
FOREST_TREES = 200


@dataclass
class Pooled:
    """The devices' splits pooled, and the encoder a federation of them would build."""

    train: Split
    val: Split
    encoder: Encoder
    class_names: list[str]
    source: str
    synthetic: bool
    n_devices: int
    tables: list[DeviceTable] = field(default_factory=list, repr=False)


def load_pooled(cfg: Mapping[str, Any], num_partitions: int | None = None) -> Pooled:
    """Every simulated device's table for ``cfg`` (a composed run config), pooled."""
    k = int(num_partitions or cfg["federation"]["num_partitions"])
    tables = [
        load_device_table(
            cfg["dataset"],
            cfg["classification"]["name"],
            cfg["partition"],
            pid,
            k,
            int(cfg["seed"]),
            float(cfg["train"]["val_fraction"]),
        )
        for pid in range(k)
    ]
    spec = tables[0].spec
    encoding = cfg.get("encoding")
    encoder = build_encoder(
        spec, encoding, pooled_totals(spec, encoding, [t.train for t in tables])
    )

    def pool(splits: Sequence[Split]) -> Split:
        return Split(
            pl.concat([s.frame for s in splits]), np.concatenate([s.labels for s in splits])
        )

    return Pooled(
        pool([t.train for t in tables]),
        pool([t.val for t in tables]),
        encoder,
        list(tables[0].class_names),
        tables[0].source.rsplit("; ", 1)[0],
        tables[0].synthetic,
        k,
        tables,
    )


def confusion_of(y: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y, np.int64), np.asarray(pred, np.int64)), 1)
    return cm


def majority_reference(p: Pooled) -> float:
    support = np.bincount(p.val.labels, minlength=len(p.class_names))
    return majority_macro_f1(support, majority_class(p.encoder.class_counts))


def forest_inputs(p: Pooled, split: Split) -> np.ndarray:
    """Parsed numbers (booleans as 1/0/-1), categorical columns one-hot via the encoder."""
    enc = p.encoder
    x = split.parsed(enc.spec)
    cols = []
    for j, col in enumerate(enc.spec.columns):
        if col.kind == "categorical":
            codes = enc.cat_stats[col.name].codes
            pos = {int(c): i for i, c in enumerate(codes)}
            oh = np.zeros((len(x), len(codes) + 1))
            slot = [pos.get(int(v), len(codes)) for v in x[:, j]]
            oh[np.arange(len(x)), slot] = 1.0
            cols.append(oh)
        else:
            cols.append(np.nan_to_num(x[:, j], nan=-1.0)[:, None])
    return np.concatenate(cols, axis=1)


def forest_reference(p: Pooled, seed: int, trees: int = FOREST_TREES) -> float | None:
    """Random-forest macro-F1, or None when scikit-learn is not installed."""
    try:
        from sklearn.ensemble import RandomForestClassifier
    except ImportError:
        return None
    rf = RandomForestClassifier(n_estimators=trees, random_state=seed, n_jobs=1)
    rf.fit(forest_inputs(p, p.train), p.train.labels)
    pred = rf.predict(forest_inputs(p, p.val))
    return macro_f1_from_confusion(confusion_of(p.val.labels, pred, len(p.class_names)))


def torch_reference(
    p: Pooled, cfg: Mapping[str, Any], epochs: int, encoder: Encoder | None = None
) -> dict[str, Any]:
    """The run's model trained centrally on the pooled train split; per-epoch macro-F1."""
    import torch

    from fedids.model import count_parameters, model_for
    from fedids.task import confusion, train

    enc = encoder or p.encoder
    torch.set_num_threads(int(cfg["train"].get("torch_threads", 1)))
    x_tr, y_tr = p.train.arrays(enc)
    x_va, y_va = p.val.arrays(enc)
    model = model_for(enc, cfg["model"], seed=int(cfg["seed"]))
    curve = []
    t0 = time.perf_counter()
    for epoch in range(epochs):
        train(
            model,
            x_tr,
            y_tr,
            epochs=1,
            batch_size=int(cfg["train"]["batch_size"]),
            lr=float(cfg["train"]["lr"]),
            weight_decay=float(cfg["train"]["weight_decay"]),
            n_classes=len(p.class_names),
            weighting=str(cfg["train"]["class_weighting"]),
            seed=int(cfg["seed"]) * 1000 + epoch,
            class_counts=np.asarray(enc.class_counts),
        )
        cm = confusion(model, x_va, y_va, len(p.class_names))
        curve.append(macro_f1_from_confusion(cm))
    return {
        "macro_f1": curve[-1] if curve else 0.0,
        "curve": curve,
        "parameters": count_parameters(model),
        "inputs": enc.n_inputs,
        "seconds": time.perf_counter() - t0,
    }


def references(
    cfg: Mapping[str, Any],
    *,
    epochs: int | None = None,
    forest: bool = True,
    num_partitions: int | None = None,
) -> dict[str, Any]:
    """Majority, random forest and centralized torch macro-F1 for a run configuration."""
    p = load_pooled(cfg, num_partitions)
    n_epochs = epochs or int(cfg["num_server_rounds"]) * int(cfg["local_epochs"])
    out: dict[str, Any] = {
        "source": p.source,
        "synthetic": p.synthetic,
        "classification": cfg["classification"]["name"],
        "devices": p.n_devices,
        "train_records": len(p.train),
        "val_records": len(p.val),
        "classes": p.class_names,
        "layout": p.encoder.spec.describe(),
        "val_support": np.bincount(p.val.labels, minlength=len(p.class_names)).tolist(),
        "majority_macro_f1": majority_reference(p),
        "forest_macro_f1": forest_reference(p, int(cfg["seed"])) if forest else None,
    }
    t = torch_reference(p, cfg, n_epochs)
    out.update(
        torch_macro_f1=t["macro_f1"],
        torch_epochs=n_epochs,
        torch_parameters=t["parameters"],
        torch_inputs=t["inputs"],
    )
    return out


def run_config(overrides: Sequence[str] = ()) -> dict[str, Any]:
    """A composed run configuration (plain dict), with the default encoding group added when
    ``conf/config.yaml`` does not list one yet."""
    from fedids.config import compose_config, to_plain

    cfg = to_plain(compose_config({}, overrides=list(overrides)))
    if "encoding" not in cfg:
        cfg = to_plain(compose_config({}, overrides=["+encoding=default", *overrides]))
    return cfg
