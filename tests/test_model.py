"""model.pt is self-contained, and a bad file gets a clear error."""

import numpy as np
import pytest

from fedids.data.features import Scaler
from fedids.model import Detector, ModelFileError, build_model, load_detector


def test_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    raw = rng.lognormal(size=(100, 4)).astype(np.float32)
    det = Detector(
        model=build_model(4, 3, [8], 0.0, seed=0),
        feature_names=["a", "b", "c", "d"],
        class_names=["normal", "DoS", "Reconn"],
        classification="multi",
        scaler=Scaler.fit(raw),
        meta={"hidden": [8], "dropout": 0.0},
    )
    det.save(tmp_path / "model.pt")
    back = load_detector(tmp_path / "model.pt")
    assert back.feature_names == det.feature_names
    assert back.class_names == det.class_names
    np.testing.assert_allclose(back.predict_proba(raw), det.predict_proba(raw), atol=1e-6)
    assert back.predict_proba(raw).sum(axis=1) == pytest.approx(np.ones(100), abs=1e-5)


def test_bad_model_files(tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        load_detector(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match="junk.pt"):
        load_detector(junk)


def test_pre_v2_model_files_still_load(tmp_path):
    import torch

    rng = np.random.default_rng(0)
    raw = rng.lognormal(size=(50, 2)).astype(np.float32)
    scaler = Scaler.fit(raw)
    model = build_model(2, 2, [4], 0.0, seed=0)
    torch.save(
        {"format": "fedids-model/1", "state_dict": model.state_dict(), "n_features": 2,
         "hidden": [4], "dropout": 0.0, "feature_names": ["a", "b"],
         "class_names": ["normal", "attack"], "classification": "binary",
         "scaler": scaler.to_dict(), "meta": {}},
        tmp_path / "old.pt",
    )  # fmt: skip
    det = load_detector(tmp_path / "old.pt")
    expected = torch.softmax(model(torch.from_numpy(scaler.transform(raw))), 1).detach().numpy()
    np.testing.assert_allclose(det.predict_proba(raw), expected, atol=1e-5)
