"""load_device_table: raw records (text kept), layout, and errors naming file/column/value."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from data_helpers import write_text

from fedids.data import DataError, load_device_table, train_val_split
from fedids.data.schema import WUSTL_FEATURES

TON = {
    "name": "ton_iot", "schema": "csv", "label_column": "type",
    "drop_columns": ["date", "time", "label"], "normal_label": "normal", "classes": None,
}  # fmt: skip
IID = {"name": "iid"}

GARAGE = "date,time,door_state,sphone_signal,label,type\r\n" + "".join(
    f"25-Apr-19, 14:42:{i % 60:02d} ,{'closed' if i % 3 else 'open'},"
    f"{['0', 'false  ', '1', 'true  '][i % 4]},{int(i % 5 > 0)},"
    f"{'normal' if i % 5 == 0 else ['ddos', 'xss'][i % 2]}\r\n"
    for i in range(200)
)


def load(dataset, path=None, **kw):
    args = dict(classification="multi", partition=IID, partition_id=0, num_partitions=2,
                seed=42, val_fraction=0.2)  # fmt: skip
    args.update(kw)
    return load_device_table({**dataset, "path": str(path) if path else None}, **args)


def test_ton_iot_preset_keeps_text_columns(tmp_path: Path):
    path = write_text(tmp_path / "garage.csv", GARAGE, bom=True)
    t = load(TON, path)
    assert t.spec.names == ["door_state", "sphone_signal"]
    assert [c.kind for c in t.spec.columns] == ["categorical", "boolean"]
    assert t.class_names == ["normal", "ddos", "xss"]
    assert len(t.train) + len(t.val) == 100 and not t.synthetic
    assert t.train.frame["door_state"].dtype.is_numeric() is False
    binary = load(TON, path, classification="binary")
    assert binary.class_names == ["normal", "attack"] and binary.spec.digest() != t.spec.digest()


def test_synthetic_and_wustl_layout(wustl_csv: Path):
    synth = load({"name": "synthetic", "schema": "wustl", "rows": 3000, "seed": 1})
    assert synth.synthetic and "SYNTHETIC" in synth.source
    assert synth.spec.names == WUSTL_FEATURES
    assert synth.spec.columns[WUSTL_FEATURES.index("Proto")].kind == "categorical"
    assert sum(c.kind == "numeric" for c in synth.spec.columns) == 40
    from_file = load({"name": "wustl", "schema": "wustl"}, wustl_csv)
    assert from_file.spec.digest() == synth.spec.digest()


def test_unknown_normal_label_lists_the_labels_found(tmp_path: Path):
    path = write_text(tmp_path / "g.csv", GARAGE)
    with pytest.raises(DataError) as err:
        load({**TON, "normal_label": "benign"}, path)
    msg = str(err.value)
    assert str(path) in msg and "'benign'" in msg and "['ddos', 'normal', 'xss']" in msg


@pytest.mark.parametrize(
    "body",
    ["date,time,door_state,sphone_signal,label,type\n", "\n".join(GARAGE.splitlines()[:2])],
    ids=["header-only", "one-row"],
)
def test_tiny_files_name_the_file(tmp_path: Path, body: str):
    path = write_text(tmp_path / "tiny.csv", body)
    with pytest.raises(DataError, match=str(path)) as err:
        load(TON, path)
    assert "no data rows" in str(err.value) or "only 1 record" in str(err.value)


def test_pinned_numeric_column_with_text_names_column_and_value(tmp_path: Path):
    path = write_text(tmp_path / "g.csv", GARAGE)
    with pytest.raises(DataError) as err:
        load({**TON, "numeric_columns": ["door_state"]}, path)
    msg = str(err.value)
    assert str(path) in msg and "'door_state'" in msg and "'open'" in msg


def test_whole_file_for_a_device_and_deterministic(tmp_path: Path):
    path = write_text(tmp_path / "g.csv", GARAGE)
    a = load(TON, None, data_path=str(path), partition_id=3, num_partitions=2)
    assert len(a.train) + len(a.val) == 200 and "not partitioned" in a.source
    b, c = load(TON, path), load(TON, path)
    assert b.train.frame.equals(c.train.frame) and np.array_equal(b.val.labels, c.val.labels)


def test_generic_flow_csv_with_protocol_service_state(tmp_path: Path):
    rows = ["srcip,proto,service,state,sbytes,dur,attack_cat"]
    for i in range(120):
        proto = ["tcp", "udp", "6", "TCP "][i % 4]
        service, state = ["-", "http", "dns"][i % 3], ["FIN", "CON"][i % 2]
        dur = "-" if i % 11 == 0 else i / 10
        label = "normal" if i % 3 else "dos"
        rows.append(f"10.0.0.{i % 7},{proto},{service},{state},{i * 10},{dur},{label}")
    path = write_text(tmp_path / "flows.csv", "\n".join(rows) + "\n")
    ds = {"name": "csv", "schema": "csv", "label_column": "attack_cat",
          "drop_columns": ["srcip"], "normal_label": "normal"}  # fmt: skip
    t = load(ds, path)
    kinds = {c.name: c.kind for c in t.spec.columns}
    assert kinds == {"proto": "categorical", "service": "categorical", "state": "categorical",
                     "sbytes": "numeric", "dur": "numeric"}  # fmt: skip
    x = t.train.parsed(t.spec)
    proto = x[:, 0]
    assert len(np.unique(proto)) == 2  # tcp, 6 and "TCP " are one protocol; udp the other


def test_train_val_split_rules() -> None:
    labels = np.array([0] * 10 + [1] * 2 + [2])
    tr, va = train_val_split(labels, 0.2, seed=1, partition_id=0)
    assert sorted(np.concatenate([tr, va]).tolist()) == list(range(13))
    assert np.bincount(labels[va], minlength=3).tolist() == [2, 1, 0]
    tr0, va0 = train_val_split(labels, 0.0, seed=1, partition_id=0)
    assert len(va0) == 0 and len(tr0) == 13
    other = train_val_split(labels, 0.2, seed=1, partition_id=1)[1]
    again = train_val_split(labels, 0.2, seed=1, partition_id=0)[1]
    assert np.array_equal(va, again) and not np.array_equal(va, other)
