"""Encoder: layouts, persistence in model.pt, and detection encoding exactly as training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from data_helpers import write_text
from test_table import GARAGE, TON

from fedids.data import build_encoder, load_device_table, pooled_totals
from fedids.data.encoder import Encoder, EncoderError
from fedids.model import Detector, count_parameters, load_detector, model_for


def _tables(path: Path, encoding: dict):
    tables = [
        load_device_table({**TON, "path": str(path)}, "multi", {"name": "iid"}, i, 2, 42, 0.2)
        for i in range(2)
    ]
    spec = tables[0].spec
    enc = build_encoder(spec, encoding, pooled_totals(spec, encoding, [t.train for t in tables]))
    return tables, enc


@pytest.fixture
def garage(tmp_path: Path) -> Path:
    extra = "".join(
        f"26-Apr-19, 10:00:{i:02d} ,{'open' if i % 2 else 'closed'},{i % 2},0,normal\n"
        for i in range(40)
    )
    return write_text(tmp_path / "garage.csv", GARAGE + extra, bom=True)


@pytest.mark.parametrize(
    ("numeric", "width"),
    [(["quantile"], 1), (["periodic"], 16), (["onehot"], 16), (["ple"], 16), (["standard"], 1),
     (["quantile", "periodic"], 17)],
)  # fmt: skip
def test_numeric_representations_have_fixed_widths(numeric, width):
    rng = np.random.default_rng(0)
    from fedids.data.spec import infer_spec
    from fedids.data.table import Split

    frame = pl.DataFrame({"x": rng.lognormal(3, 1, 500)})
    split = Split(frame, rng.integers(0, 2, 500))
    spec = infer_spec(frame, {}, ["normal", "attack"])
    cfg = {"numeric": numeric, "bins": 16, "frequencies": 8}
    enc = build_encoder(spec, cfg, pooled_totals(spec, cfg, [split]))
    x = enc.transform(frame)
    assert enc.n_inputs == width and x.shape == (500, width) and x.dtype == np.float32
    assert np.isfinite(x).all() and np.abs(x).max() <= 10
    if numeric == ["onehot"]:
        assert (x.sum(axis=1) == 1).all() and (x.sum(axis=0) > 0).sum() >= 15


def test_round_trip_through_model_pt(tmp_path: Path, garage: Path):
    tables, enc = _tables(garage, {})
    back = Encoder.from_dict(enc.to_dict())
    frame = tables[1].val.frame
    np.testing.assert_array_equal(back.transform(frame), enc.transform(frame))
    model = model_for(enc, {"hidden": [8], "dropout": 0.0}, seed=3)
    det = Detector.from_encoder(model, enc, "multi", {"hidden": [8], "dropout": 0.0})
    det.to_file(tmp_path / "model.pt")
    loaded = Detector.from_file(tmp_path / "model.pt")
    assert loaded.encoder.to_dict() == enc.to_dict()
    assert loaded.feature_names == ["door_state", "sphone_signal"]
    np.testing.assert_allclose(loaded.predict_frame(frame), det.predict_frame(frame), atol=1e-6)
    assert count_parameters(model) == (enc.n_inputs * 8 + 8) + 16 + (8 * 3 + 3)


def test_detect_time_transform_equals_train_time(tmp_path: Path, garage: Path):
    """The alert path (read_flows -> feature_matrix -> predict_proba) sees the very inputs
    training saw, for the same rows of the same file."""
    from fedids.alerts.flows import feature_matrix, read_flows

    tables, enc = _tables(garage, {})
    det = Detector.from_encoder(model_for(enc, {"hidden": [4]}, 0), enc, "multi", {"hidden": [4]})
    det.save(tmp_path / "model.pt")
    det = load_detector(tmp_path / "model.pt")
    flows = read_flows(garage, det.feature_names)
    parsed = feature_matrix(flows, det.feature_names, str(garage))
    raw = pl.read_csv(garage, infer_schema=False).rename(lambda c: c.lstrip("\ufeff"))
    trained = enc.transform(raw.select(enc.feature_names))
    np.testing.assert_array_equal(enc.encode(parsed), trained)
    np.testing.assert_allclose(
        det.predict_proba(parsed), det.predict_frame(raw.select(enc.feature_names)), atol=1e-7
    )


def test_unknown_categories_and_junk_never_crash(garage: Path):
    _, enc = _tables(garage, {})
    odd = pl.DataFrame(
        {"door_state": ["ajar", None, " OPEN "], "sphone_signal": ["maybe", "", "on"]}
    )
    x = enc.transform(odd)
    other = x[:, len(enc.cat_stats["door_state"].codes)]
    assert other.tolist() == [1.0, 1.0, 0.0]  # unknown and empty -> "other"; OPEN is known
    assert x[:, -1].tolist() == [0.0, 0.0, 1.0]  # boolean: unknown 0, on +1


def test_bad_encoder_descriptions_are_refused(garage: Path):
    _, enc = _tables(garage, {})
    d = enc.to_dict()
    with pytest.raises(EncoderError, match="not a fedids encoder"):
        Encoder.from_dict({**d, "format": "x"})
    with pytest.raises(EncoderError, match="encoding.numeric"):
        Encoder.from_dict({**d, "numeric": ["fourier"]})
    with pytest.raises(EncoderError, match="incomplete"):
        Encoder.from_dict({k: v for k, v in d.items() if k != "spec"})


def test_detect_equals_train_on_numeric_flows(tmp_path: Path, wustl_csv: Path):
    from fedids.alerts.flows import feature_matrix, read_flows
    from fedids.data.raw import load_wustl_raw

    dataset = {"name": "wustl", "schema": "wustl", "path": str(wustl_csv)}
    t = load_device_table(dataset, "multi", {"name": "iid"}, 0, 1, 42, 0.0)
    enc = build_encoder(t.spec, {}, pooled_totals(t.spec, {}, [t.train]))
    det = Detector.from_encoder(model_for(enc, {"hidden": [4]}, 0), enc, "multi", {"hidden": [4]})
    det.save(tmp_path / "model.pt")
    det = load_detector(tmp_path / "model.pt")
    parsed = feature_matrix(read_flows(wustl_csv, det.feature_names), det.feature_names, "f")
    np.testing.assert_array_equal(
        enc.encode(parsed), enc.transform(load_wustl_raw(wustl_csv).frame)
    )
