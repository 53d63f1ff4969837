"""Robust CSV reading and the dataset loaders (WUSTL, generic CSV, synthetic)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from data_helpers import write_text

from fedids.data.loaders import (
    DataError,
    NonNumericColumnError,
    load_csv_file,
    load_dataset,
    load_wustl_file,
    read_flow_table,
    read_header,
)
from fedids.data.schema import WUSTL_CLASSES, WUSTL_FEATURES

# --- read_flow_table -------------------------------------------------------------------


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "flows.csv"
    with pytest.raises(FileNotFoundError, match="nowhere/flows.csv"):
        read_flow_table(path)


def test_directory_is_not_a_flow_table(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a file"):
        read_flow_table(tmp_path)


def test_bom_and_padded_header_names_are_cleaned(tmp_path: Path) -> None:
    path = write_text(tmp_path / "bom.csv", " Rate , Dur ,label\n1,2,normal\n", bom=True)
    df = read_flow_table(path)
    assert df.columns == ["Rate", "Dur", "label"]
    assert read_header(path) == ["Rate", "Dur", "label"]
    assert df["Rate"].to_list() == [1.0]


def test_blank_lines_are_skipped(tmp_path: Path) -> None:
    text = "\n\na,b\n1,2\n\n3,4\n   \n,\n5,6\n\n"
    df = read_flow_table(write_text(tmp_path / "blank.csv", text))
    assert df["a"].to_list() == [1.0, 3.0, 5.0]
    assert df["b"].to_list() == [2.0, 4.0, 6.0]


def test_numbers_written_as_text_are_cast(tmp_path: Path) -> None:
    text = 'a,b,c,d\n"1.5", 2 ,0x1F,1e3\n"-3",+4,0X0a, 7\n'
    df = read_flow_table(write_text(tmp_path / "text.csv", text), text_columns=[])
    assert df.schema == pl.Schema({c: pl.Float64 for c in "abcd"})
    assert df.rows() == [(1.5, 2.0, 31.0, 1000.0), (-3.0, 4.0, 10.0, 7.0)]


def test_float32_output(tmp_path: Path) -> None:
    df = read_flow_table(write_text(tmp_path / "f.csv", "a\n1.25\n"), float_dtype=pl.Float32)
    assert df.schema["a"] == pl.Float32


def test_text_in_a_numeric_column_names_column_line_and_value(tmp_path: Path) -> None:
    text = "a,b,label\n1,2,x\n\n3,oops,y\n4,bad,z\n"
    path = write_text(tmp_path / "bad.csv", text)
    with pytest.raises(NonNumericColumnError) as err:
        read_flow_table(path, text_columns=["label"])
    msg = str(err.value)
    assert "'b'" in msg and "'oops'" in msg and "line 4" in msg and str(path) in msg
    assert "2 value(s)" in msg
    assert (err.value.column, err.value.sample, err.value.count) == ("b", "oops", 2)


def test_columns_are_typed_by_content_when_not_told(tmp_path: Path) -> None:
    text = "SrcAddr,Rate,Proto,Traffic\n192.0.2.1,1.5,6,normal\n192.0.2.2, 3 ,17,DoS\n"
    df = read_flow_table(write_text(tmp_path / "auto.csv", text))
    assert df.schema["SrcAddr"] == pl.String and df.schema["Traffic"] == pl.String
    assert df.schema["Rate"] == pl.Float64 and df["Rate"].to_list() == [1.5, 3.0]
    assert df["Traffic"].to_list() == ["normal", "DoS"]


def test_column_that_turns_to_text_after_the_sample_stays_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fedids.data.reader as reader

    monkeypatch.setattr(reader, "SAMPLE_ROWS", 2)
    path = write_text(tmp_path / "late.csv", "a,b\n1,1\n2,2\n3,three\n")
    df = read_flow_table(path)
    assert df.schema["a"] == pl.Float64
    assert df["b"].to_list() == ["1", "2", "three"]


def test_nan_inf_and_empty_cells_become_zero_and_are_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    text = "a,b,c\nnan,1,inf\n2,,-inf\nNaN,3,Infinity\n4,5,6\n"
    path = write_text(tmp_path / "nan.csv", text)
    with caplog.at_level(logging.WARNING, logger="fedids.data.loaders"):
        df = read_flow_table(path)
    assert df.rows() == [(0.0, 1.0, 0.0), (2.0, 0.0, 0.0), (0.0, 3.0, 0.0), (4.0, 5.0, 6.0)]
    messages = [r.getMessage() for r in caplog.records]
    assert any("'a'" in m and "2 NaN, 0 infinite and 0 empty" in m for m in messages)
    assert any("'b'" in m and "0 NaN, 0 infinite and 1 empty" in m for m in messages)
    assert any("'c'" in m and "0 NaN, 3 infinite and 0 empty" in m for m in messages)


def test_clean_file_logs_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        read_flow_table(write_text(tmp_path / "ok.csv", "a,b\n1,2\n"))
    assert not caplog.records


def test_selected_columns_extra_columns_ignored(tmp_path: Path) -> None:
    path = write_text(tmp_path / "extra.csv", "x,a,junk,b\n1,2,not a number,3\n")
    df = read_flow_table(path, columns=["b", "a"], text_columns=[])
    assert df.columns == ["b", "a"] and df.row(0) == (3.0, 2.0)


def test_missing_requested_columns_are_listed(tmp_path: Path) -> None:
    path = write_text(tmp_path / "m.csv", "a,b\n1,2\n")
    with pytest.raises(DataError, match=r"missing column\(s\): c, d"):
        read_flow_table(path, columns=["a", "c", "d"])


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "empty"),
        ("\n\n", "empty"),
        ("a,a,b\n1,2,3\n", "duplicate column name.*a"),
        ("a,b\n1,2\n3,4,5\n", "cannot be read as a CSV"),
        ("a;b;c\n1;2;3\n", "comma-separated"),
    ],
)
def test_malformed_files_name_the_file(tmp_path: Path, text: str, match: str) -> None:
    path = write_text(tmp_path / "broken.csv", text)
    with pytest.raises(DataError, match=match) as err:
        read_flow_table(path)
    assert str(path) in str(err.value)


def test_header_only_file_gives_an_empty_table(tmp_path: Path) -> None:
    df = read_flow_table(write_text(tmp_path / "h.csv", "a,b\n"), text_columns=[])
    assert df.shape == (0, 2)


# --- WUSTL -----------------------------------------------------------------------------


def test_wustl_file_round_trip(wustl_csv: Path, small_flows: pl.DataFrame) -> None:
    flows = load_wustl_file(wustl_csv)
    assert flows.feature_names == WUSTL_FEATURES
    assert flows.classes == WUSTL_CLASSES
    assert flows.features.schema == pl.Schema({f: pl.Float32 for f in WUSTL_FEATURES})
    expected = small_flows["Traffic"].replace_strict({c: i for i, c in enumerate(WUSTL_CLASSES)})
    assert np.array_equal(flows.labels, expected.to_numpy())
    assert np.allclose(
        flows.features.to_numpy(), small_flows.select(WUSTL_FEATURES).to_numpy(), rtol=1e-6
    )
    assert flows.synthetic and "SYNTHETIC" in flows.source


def test_wustl_extra_columns_and_other_order_are_fine(
    tmp_path: Path, small_flows: pl.DataFrame
) -> None:
    path = tmp_path / "extra.csv"
    shuffled = small_flows.select(list(reversed(small_flows.columns)))
    shuffled.with_columns(pl.lit("note").alias("Comment")).write_csv(path)
    flows = load_wustl_file(path)
    assert flows.feature_names == WUSTL_FEATURES
    assert len(flows) == small_flows.height


def test_wustl_unknown_traffic_value_names_value_file_and_count(
    tmp_path: Path, small_flows: pl.DataFrame
) -> None:
    path = tmp_path / "odd.csv"
    labels = small_flows["Traffic"].to_list()
    labels[3] = labels[7] = "Ransomware"
    small_flows.with_columns(pl.Series("Traffic", labels)).write_csv(path)
    with pytest.raises(DataError) as err:
        load_wustl_file(path)
    assert "'Ransomware' (2 rows)" in str(err.value) and str(path) in str(err.value)


def test_wustl_empty_label_is_an_error(tmp_path: Path, small_flows: pl.DataFrame) -> None:
    path = tmp_path / "nolabel.csv"
    labels = small_flows["Traffic"].to_list()
    labels[0] = None
    small_flows.with_columns(pl.Series("Traffic", labels)).write_csv(path)
    with pytest.raises(DataError, match=r"'Traffic' is empty in 1 row"):
        load_wustl_file(path)


def test_wustl_target_mismatch_is_logged_traffic_wins(
    tmp_path: Path, small_flows: pl.DataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "target.csv"
    small_flows.with_columns(pl.lit(0).alias("Target")).write_csv(path)
    with caplog.at_level(logging.WARNING):
        flows = load_wustl_file(path)
    attacks = int((small_flows["Traffic"] != "normal").sum())
    assert int((flows.labels > 0).sum()) == attacks
    assert any(f"{attacks} row(s) have a Target" in r.getMessage() for r in caplog.records)


def test_wustl_protocol_names_are_numbered(tmp_path: Path, small_flows: pl.DataFrame) -> None:
    path = tmp_path / "proto.csv"
    names = small_flows["Proto"].replace_strict({6: "tcp", 17: "UDP", 1: "icmp"})
    small_flows.with_columns(names.alias("Proto")).write_csv(path)
    flows = load_wustl_file(path)
    assert np.array_equal(flows.features["Proto"].to_numpy(), small_flows["Proto"].to_numpy())
    bad = tmp_path / "badproto.csv"
    small_flows.with_columns(pl.lit("quic").alias("Proto")).write_csv(bad)
    with pytest.raises(DataError, match="unknown protocol name.*quic"):
        load_wustl_file(bad)


def test_wustl_real_looking_addresses_are_not_synthetic(
    tmp_path: Path, small_flows: pl.DataFrame
) -> None:
    path = tmp_path / "real.csv"
    small_flows.with_columns(pl.lit("192.168.0.20").alias("SrcAddr")).write_csv(path)
    flows = load_wustl_file(path)
    assert not flows.synthetic and "SYNTHETIC" not in flows.source


# --- generic CSV -----------------------------------------------------------------------

SANDBOX = (
    "timestamp,src_ip,dst_ip,flow_id,pkts,bytes,duration,label\n"
    "2024-01-01T00:00:00,10.0.0.1,10.0.0.2,f1,10,1000,0.5,normal\n"
    "2024-01-01T00:00:01,10.0.0.3,10.0.0.2,f2,9000,540000,1.0,ddos\n"
    "2024-01-01T00:00:02,10.0.0.1,10.0.0.2,f3,12,1300,0.7,normal\n"
    "2024-01-01T00:00:03,10.0.0.4,10.0.0.2,f4,100,6000,0.01,scan\n"
)


def test_ddos_sandbox_preset_from_the_real_config(tmp_path: Path) -> None:
    from fedids.config import compose_config, to_plain

    path = write_text(tmp_path / "sandbox.csv", SANDBOX)
    cfg = to_plain(compose_config(overrides=["dataset=ddos_sandbox", f"dataset.path={path}"]))
    flows = load_dataset(cfg["dataset"])
    assert flows.feature_names == ["pkts", "bytes", "duration"]
    assert flows.classes == ["normal", "ddos", "scan"]  # normal first, then sorted
    assert flows.labels.tolist() == [0, 1, 0, 2]
    assert flows.features.row(1) == (9000.0, 540000.0, 1.0)
    assert not flows.synthetic and str(path) in flows.source


def test_csv_without_drop_columns_suggests_them(tmp_path: Path) -> None:
    path = write_text(tmp_path / "sandbox.csv", SANDBOX)
    with pytest.raises(DataError) as err:
        load_csv_file(path, label_column="label", drop_columns=["timestamp"])
    msg = str(err.value)
    assert "'src_ip'" in msg and "drop_columns" in msg and "10.0.0.1" in msg


def test_csv_given_classes_are_used_and_checked(tmp_path: Path) -> None:
    path = write_text(tmp_path / "sandbox.csv", SANDBOX)
    drop = ["timestamp", "src_ip", "dst_ip", "flow_id"]
    flows = load_csv_file(
        path, label_column="label", drop_columns=drop, classes=["normal", "scan", "ddos", "bot"]
    )
    assert flows.classes == ["normal", "scan", "ddos", "bot"]
    assert flows.labels.tolist() == [0, 2, 0, 1]
    with pytest.raises(DataError, match=r"unknown value.*'scan' \(1 rows\)"):
        load_csv_file(path, label_column="label", drop_columns=drop, classes=["normal", "ddos"])
    with pytest.raises(DataError, match="must start with normal_label"):
        load_csv_file(
            path, label_column="label", drop_columns=drop, classes=["ddos", "normal", "scan"]
        )


def test_csv_numeric_labels_and_normal_label(tmp_path: Path) -> None:
    path = write_text(tmp_path / "num.csv", "f1,f2,y\n1,2,0\n3,4,1\n5,6,0\n7,8,2\n")
    flows = load_csv_file(path, label_column="y", normal_label=0)
    assert flows.classes == ["0", "1", "2"] and flows.labels.tolist() == [0, 1, 0, 2]


def test_csv_normal_label_absent_is_warned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_text(tmp_path / "float.csv", "f1,y\n1,0.0\n2,1.0\n")
    with caplog.at_level(logging.WARNING):
        flows = load_csv_file(path, label_column="y", normal_label=0)
    assert flows.classes == ["0", "0.0", "1.0"]
    assert any("normal_label '0' never occurs" in r.getMessage() for r in caplog.records)


def test_csv_missing_label_column_lists_columns(tmp_path: Path) -> None:
    path = write_text(tmp_path / "nolabel.csv", "f1,f2\n1,2\n")
    with pytest.raises(DataError, match=r"label column 'label' not found \(columns: f1, f2\)"):
        load_csv_file(path, label_column="label")


def test_csv_dataset_needs_a_path_and_label_column(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="dataset.path"):
        load_dataset({"name": "csv", "schema": "csv", "path": None, "label_column": "y"})
    path = write_text(tmp_path / "x.csv", "f1,y\n1,a\n")
    with pytest.raises(DataError, match="label_column"):
        load_dataset({"name": "csv", "schema": "csv", "path": str(path)})
    with pytest.raises(DataError, match="schema"):
        load_dataset({"name": "csv", "schema": "parquet", "path": str(path)})


# --- dispatch --------------------------------------------------------------------------


def test_synthetic_dataset_is_generated_and_says_so() -> None:
    flows = load_dataset(
        {"name": "synthetic", "schema": "wustl", "path": None, "rows": 800, "seed": 3}
    )
    assert len(flows) == 800 and flows.synthetic
    assert "SYNTHETIC" in flows.source and "rows=800" in flows.source and "seed=3" in flows.source
    assert flows.features.schema == pl.Schema({f: pl.Float32 for f in WUSTL_FEATURES})


def test_data_path_overrides_dataset_path(tmp_path: Path, wustl_csv: Path) -> None:
    dataset = {"name": "wustl", "schema": "wustl", "path": str(tmp_path / "absent.csv")}
    with pytest.raises(FileNotFoundError, match="absent.csv"):
        load_dataset(dataset)
    flows = load_dataset(dataset, data_path=str(wustl_csv))
    assert str(wustl_csv) in flows.source and len(flows) == 1500


def test_error_types_keep_their_public_module() -> None:
    from fedids.data.loaders import DataError, NonNumericColumnError

    assert f"{DataError.__module__}.{DataError.__qualname__}" == "fedids.data.loaders.DataError"
    assert NonNumericColumnError.__module__ == "fedids.data.loaders"
