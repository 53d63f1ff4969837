"""Reading and scoring flows: feature columns, bad cells, batching, verdict rules."""

from __future__ import annotations

import logging

import numpy as np
import polars as pl
import pytest
from alerts_helpers import CLASSES, FEATURES, FlowSpec, make_flows, write_csv

from fedids.alerts.errors import AlertsInputError
from fedids.alerts.flows import (
    context_table,
    decide,
    detections_table,
    feature_matrix,
    normal_class_index,
    read_flows,
    score,
)
from fedids.model import load_detector


def test_missing_feature_column_names_column_and_file(tmp_path):
    path = write_csv(make_flows([FlowSpec(1)]).drop("Dport", "SrcPkts"), tmp_path / "f.csv")
    df = read_flows(path)
    with pytest.raises(AlertsInputError) as err:
        feature_matrix(df, FEATURES, str(path))
    assert "Dport" in str(err.value) and "SrcPkts" in str(err.value)
    assert str(path) in str(err.value)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(AlertsInputError, match="not found.*nope.csv"):
        read_flows(tmp_path / "nope.csv")


def test_text_column_without_numbers_is_an_error():
    df = make_flows([FlowSpec(1, n=3)]).with_columns(pl.lit("tcp").alias("Mean"))
    with pytest.raises(AlertsInputError, match="column Mean holds no numbers"):
        feature_matrix(df, FEATURES, "flows.csv")


def test_bad_cells_become_zero_with_a_warning(caplog):
    df = make_flows([FlowSpec(1, n=4)]).with_columns(
        pl.Series("Mean", ["1.5", "oops", "nan", "inf"]),
        pl.Series("Sport", ["0x0303", "80", None, "12"]),
    )
    with caplog.at_level(logging.WARNING):
        x = feature_matrix(df, FEATURES, "flows.csv")
    assert x.dtype == np.float32 and x.shape == (4, len(FEATURES))
    mean = x[:, FEATURES.index("Mean")]
    assert mean.tolist() == [1.5, 0.0, 0.0, 0.0]
    assert x[:, FEATURES.index("Sport")].tolist() == [0x0303, 80, 0, 12]
    assert np.isfinite(x).all()
    assert "Mean" in caplog.text and "NaN/infinite" in caplog.text


def test_batched_scoring_equals_one_batch(model_path):
    det = load_detector(model_path)
    rng = np.random.default_rng(1)
    x = rng.lognormal(2, 2, size=(1000, len(FEATURES))).astype(np.float32)
    x[:, FEATURES.index("sTos")] = rng.integers(0, 5, size=1000)
    one = score(det.predict_proba, x, batch_size=1000)
    many = score(det.predict_proba, x, batch_size=7)
    np.testing.assert_allclose(one, many, rtol=1e-5, atol=1e-6)
    assert one.argmax(1).tolist() == x[:, FEATURES.index("sTos")].astype(int).tolist()


def test_decide_argmax_and_threshold_rules():
    probs = np.array([[0.45, 0.30, 0.25], [0.9, 0.05, 0.05], [0.1, 0.2, 0.7]], np.float32)
    v = decide(probs, 0, None)
    assert v.flagged.tolist() == [False, False, True]
    assert v.class_idx[2] == 2 and v.prob[2] == pytest.approx(0.7)
    v = decide(probs, 0, 0.5)  # attack probability 0.55, 0.10, 0.90
    assert v.flagged.tolist() == [True, False, True]
    assert v.class_idx.tolist()[0] == 1 and v.prob[0] == pytest.approx(0.30)


def test_normal_class_index():
    assert normal_class_index(CLASSES) == 0
    assert normal_class_index(["attack", "Normal"]) == 1
    assert normal_class_index(["a", "b"]) == 0


def test_context_columns_are_standardized():
    df = pl.DataFrame(
        {
            "src_ip": ["10.0.0.1", " "],
            "Dport": ["0x01f6", "80"],
            "Proto": [6, 17],
            "StartTime": [1_640_995_200_000.0, None],  # milliseconds are recognized
        }
    )
    ctx = context_table(df)
    assert ctx["src"].to_list() == ["10.0.0.1", None]
    assert ctx["dst"].to_list() == [None, None]
    assert ctx["dport"].to_list() == [502, 80]
    assert ctx["proto"].to_list() == ["tcp", "udp"]
    assert ctx["start"].to_list() == [1_640_995_200.0, None]


def test_detections_table_keeps_flagged_rows_only(model_path):
    det = load_detector(model_path)
    df = make_flows([FlowSpec(0, n=5), FlowSpec(3, src="10.1.1.1", n=2)])
    probs = det.predict_proba(feature_matrix(df, det.feature_names, "t"))
    table = detections_table(df, decide(probs, 0, None), det.class_names)
    assert table.height == 2
    assert table["attack_class"].to_list() == ["CommInj", "CommInj"]
    assert table["src"].to_list() == ["10.1.1.1", "10.1.1.1"]
    assert (table["prob"] > 0.9).all()


def test_protocol_names_score_like_training_numbers():
    import polars as pl

    from fedids.alerts.flows import feature_matrix

    df = pl.DataFrame({"Proto": ["tcp", "UDP", "17", "icmp"], "Dur": ["1", "2", "3", "4"]})
    x = feature_matrix(df, ["Proto", "Dur"], "flows.csv")
    assert x[:, 0].tolist() == [6.0, 17.0, 17.0, 1.0]
