"""Real TON_IoT telemetry (skipped when ../shared/data/ton_iot or $FEDIDS_TON_IOT is absent)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from fedids.data import build_encoder, load_device_table, pooled_totals, summary_lengths

REPO = Path(__file__).resolve().parents[2]
CANDIDATES = [os.environ.get("FEDIDS_TON_IOT", ""), REPO.parent / "shared/data/ton_iot",
              REPO.parents[1] / "shared/data/ton_iot"]  # fmt: skip
TON_DIR = next((Path(c) for c in CANDIDATES if c and (Path(c) / "README.md").is_file()), None)
pytestmark = pytest.mark.skipif(TON_DIR is None, reason="TON_IoT files not present")

PRESET = {
    "name": "ton_iot",
    "schema": "csv",
    "label_column": "type",
    "drop_columns": ["date", "time", "label"],
    "normal_label": "normal",
    "classes": None,
}
KINDS = {
    "GPS_Tracker": {"latitude": "numeric", "longitude": "numeric"},
    "Garage_Door": {"door_state": "categorical", "sphone_signal": "boolean"},
    "Fridge": {"fridge_temperature": "numeric", "temp_condition": "categorical"},
}


def _tables(name: str, classification: str = "multi"):
    path = TON_DIR / f"Train_Test_IoT_{name}.csv"  # type: ignore[operator]
    return [
        load_device_table(
            {**PRESET, "path": str(path)}, classification, {"name": "iid"}, i, 2, 42, 0.2
        )  # fmt: skip
        for i in range(2)
    ]


@pytest.mark.parametrize("name", list(KINDS))
def test_every_file_loads_with_its_text_columns(name):
    tables = _tables(name)
    spec = tables[0].spec
    assert {c.name: c.kind for c in spec.columns} == KINDS[name]
    assert spec.class_names[0] == "normal" and len(spec.class_names) in (7, 8)
    assert tables[1].spec.digest() == spec.digest()
    lengths = summary_lengths(spec, {})
    assert lengths[0] < 3000 and lengths[1] <= 2049


def test_garage_door_binary_is_learned_quickly():
    import torch

    from fedids.metrics_quality import macro_f1_from_confusion
    from fedids.model import model_for
    from fedids.task import confusion, train

    tables = _tables("Garage_Door", "binary")
    spec = tables[0].spec
    enc = build_encoder(spec, {}, pooled_totals(spec, {}, [t.train for t in tables]))
    x, y = tables[0].train.arrays(enc)
    xv, yv = tables[1].val.arrays(enc)
    torch.set_num_threads(1)
    model = model_for(enc, {"hidden": [16]}, seed=0)
    train(model, x, y, epochs=2, batch_size=256, lr=3e-3, weight_decay=0.0, n_classes=2,
          weighting="sqrt_inverse", seed=0, class_counts=np.asarray(enc.class_counts))  # fmt: skip
    assert macro_f1_from_confusion(confusion(model, xv, yv, 2)) > 0.95
