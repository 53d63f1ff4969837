"""Centralized references: same splits as a run, pooled; the command prints them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fedids.baseline import forest_reference, load_pooled, majority_reference, run_config
from fedids.cli import main

SMALL = ["dataset.rows=4000", "num_server_rounds=1", "local_epochs=1"]


@pytest.fixture(scope="module")
def pooled():
    return load_pooled(run_config(SMALL), 2)


def test_pooled_splits_are_the_devices_splits(pooled):
    assert pooled.n_devices == 2 and pooled.synthetic
    assert len(pooled.train) == sum(len(t.train) for t in pooled.tables)
    assert np.array_equal(pooled.val.labels, np.concatenate([t.val.labels for t in pooled.tables]))
    assert pooled.encoder.n_total == len(pooled.train)


def test_references_beat_the_majority_on_synthetic_data(pooled):
    pytest.importorskip("sklearn")
    majority = majority_reference(pooled)
    assert 0.1 < majority < 0.4  # always "normal" (~93 %): F1 ~0.96 over the classes present
    assert forest_reference(pooled, seed=0, trees=20) > majority + 0.3


def test_command_prints_references_and_run_verdict(tmp_path: Path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    cfg = run_config(SMALL)
    import yaml

    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    (run / "metrics.json").write_text(
        json.dumps({"mode": "plain", "rounds": [{"round": 1, "macro_f1": 0.19}]})
    )
    out_json = tmp_path / "refs.json"
    assert main(["baseline", "--run", str(run), "--no-forest", "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "majority class" in out and "torch model (centralized)" in out
    assert "federated plain (round 1)" in out and "learned nothing" in out and "SYNTHETIC" in out
    doc = json.loads(out_json.read_text())
    assert doc["federated"]["macro_f1"] == 0.19 and doc["references"]["forest_macro_f1"] is None


def test_command_names_a_bad_run_dir(tmp_path: Path, capsys):
    assert main(["baseline", "--run", str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err
