"""Column kinds: inference, config overrides, cell parsing rules, layout digest."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from fedids.data.spec import (
    ColumnSpec,
    FeatureSpec,
    SpecError,
    category_keys,
    infer_kind,
    infer_spec,
    parse_column,
    stable_hash,
)

CLASSES = ["normal", "attack"]


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        (["1", " 2.5", "0x1f", None, ""], "numeric"),
        (["1", "-", "3", "?"], "numeric"),  # missing markers do not make a column text
        (["0", "1", "0"], "numeric"),  # 0/1 alone stay numbers
        (["0", "false  ", "1", "TRUE", " on", "off"], "boolean"),
        (["yes", "No", "y", "N"], "boolean"),
        (["closed", "open", " closed "], "categorical"),
        (["tcp", "6", "udp"], "categorical"),
        ([None, None], "numeric"),
    ],
)
def test_infer_kind(values, kind):
    assert infer_kind(pl.Series("c", values, dtype=pl.String)) == kind


def test_numeric_dtype_is_numeric():
    assert infer_kind(pl.Series("c", [0.0, 1.0, 2.0])) == "numeric"


def test_boolean_parsing_spaces_case_and_unknown():
    col = ColumnSpec("s", "boolean")
    values, unknown = parse_column(
        pl.Series(["0", "false  ", "1", " True", "ON", "off", "maybe", None]), col
    )
    assert values[:6].tolist() == [0, 0, 1, 1, 1, 0]
    assert np.isnan(values[6:]).all() and unknown == 2
    numbers, _ = parse_column(pl.Series([1.0, 0.0, 2.0]), col)
    assert numbers[:2].tolist() == [1, 0] and np.isnan(numbers[2])


def test_numeric_parsing_replaces_unreadable_cells_by_zero():
    col = ColumnSpec("x", "numeric")
    values, bad = parse_column(pl.Series(["1.5", "0x10", " 3 ", "-", "inf", None, "oops"]), col)
    assert values.tolist() == [1.5, 16.0, 3.0, 0.0, 0.0, 0.0, 0.0]
    assert bad == 4


def test_protocol_names_in_protocol_columns():
    keys = category_keys(pl.Series(["TCP", "6", " 6.0", "udp", "gre"]), "Proto")
    assert keys.to_list() == ["6", "6", "6", "17", "gre"]
    nums = category_keys(pl.Series([6.0, 17.0, 1.5]), "proto")
    assert nums.to_list() == ["6", "17", "1.5"]
    values, _ = parse_column(pl.Series(["tcp", "17"]), ColumnSpec("Proto", "numeric"))
    assert values.tolist() == [6.0, 17.0]


def test_hashing_is_stable_and_unknown_vocab_goes_to_other():
    assert stable_hash("closed", 1024) == stable_hash("closed", 1024)  # no per-run salt
    assert 0 <= stable_hash("x", 7) < 7
    hashed, _ = parse_column(
        pl.Series([" Closed", "closed", "open"]), ColumnSpec("d", "categorical")
    )
    assert hashed[0] == hashed[1] != hashed[2]
    assert hashed[0] == stable_hash("closed", 1024)
    vocab = ColumnSpec("d", "categorical", vocabulary=("open", "closed"))
    values, unknown = parse_column(pl.Series(["closed", "OPEN", "ajar", None]), vocab)
    assert values.tolist() == [1, 0, 2, 2] and unknown == 2


def test_infer_spec_with_overrides_and_digest():
    frame = pl.DataFrame(
        {"a": ["1", "2"], "flag": ["true", "0"], "state": ["x", "y"], "n": [0.0, 1.0]}
    )
    spec = infer_spec(frame, {}, CLASSES)
    assert [c.kind for c in spec.columns] == ["numeric", "boolean", "categorical", "numeric"]
    pinned = infer_spec(
        frame,
        {
            "categorical_columns": ["a"],
            "boolean_columns": ["n"],
            "vocabularies": {"state": ["X", "y"]},
        },
        CLASSES,
    )
    assert [c.kind for c in pinned.columns] == ["categorical", "boolean", "categorical", "boolean"]
    assert pinned.columns[2].vocabulary == ("x", "y")
    assert spec.digest() != pinned.digest()
    assert FeatureSpec.from_dict(spec.to_dict()).digest() == spec.digest()
    assert infer_spec(frame, {}, ["normal", "other"]).digest() != spec.digest()


@pytest.mark.parametrize(
    ("dataset", "match"),
    [
        ({"numeric_columns": ["nope"]}, "not features of the file: nope"),
        ({"numeric_columns": ["a"], "boolean_columns": ["a"]}, "both numeric and boolean"),
        ({"vocabularies": {"a": []}}, "non-empty list"),
        ({"numeric_columns": ["a"], "vocabularies": {"a": ["x"]}}, "listed as numeric"),
    ],
)
def test_bad_overrides_name_the_column(dataset, match):
    frame = pl.DataFrame({"a": ["1", "2"]})
    with pytest.raises(SpecError, match=match):
        infer_spec(frame, dataset, CLASSES, source="f.csv")


def test_parse_names_missing_columns():
    spec = infer_spec(pl.DataFrame({"a": [1.0], "b": ["x"]}), {}, CLASSES)
    with pytest.raises(SpecError, match="flows.csv: missing feature column.*b"):
        spec.parse(pl.DataFrame({"a": [1.0]}), source="flows.csv")
