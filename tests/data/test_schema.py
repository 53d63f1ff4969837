"""The WUSTL-IIoT-2021 schema lists and their use when validating files."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from fedids.data.loaders import DataError, load_wustl_file
from fedids.data.schema import (
    BINARY_CLASSES,
    WUSTL_CLASS_COUNTS,
    WUSTL_CLASSES,
    WUSTL_COLUMNS,
    WUSTL_DROP,
    WUSTL_FEATURES,
    WUSTL_TOTAL_RECORDS,
)

#: The column order as the dataset's documentation lists it (copied, not computed).
PUBLISHED_ORDER = (
    "StartTime, LastTime, SrcAddr, DstAddr, Mean, Sport, Dport, SrcPkts, DstPkts, TotPkts, "
    "DstBytes, SrcBytes, TotBytes, SrcLoad, DstLoad, Load, SrcRate, DstRate, Rate, SrcLoss, "
    "DstLoss, Loss, pLoss, SrcJitter, DstJitter, SIntPkt, DIntPkt, Proto, Dur, TcpRtt, IdleTime, "
    "Sum, Min, Max, sDSb, sTtl, dTtl, sIpId, dIpId, SAppBytes, DAppBytes, TotAppByte, SynAck, "
    "RunTime, sTos, SrcJitAct, DstJitAct, Traffic, Target"
).split(", ")


def test_columns_in_published_order() -> None:
    assert len(PUBLISHED_ORDER) == 49
    assert WUSTL_COLUMNS == PUBLISHED_ORDER


def test_features_are_the_41_remaining_columns_in_order() -> None:
    assert WUSTL_DROP == ["StartTime", "LastTime", "SrcAddr", "DstAddr", "sIpId", "dIpId"]
    assert len(WUSTL_FEATURES) == 41
    assert not set(WUSTL_FEATURES) & (set(WUSTL_DROP) | {"Traffic", "Target"})
    positions = [WUSTL_COLUMNS.index(f) for f in WUSTL_FEATURES]
    assert positions == sorted(positions)
    assert WUSTL_FEATURES[0] == "Mean" and WUSTL_FEATURES[-1] == "DstJitAct"


def test_classes_and_counts() -> None:
    assert WUSTL_CLASSES == ["normal", "DoS", "Reconn", "CommInj", "Backdoor"]
    assert list(WUSTL_CLASS_COUNTS) == WUSTL_CLASSES
    assert WUSTL_TOTAL_RECORDS == 1_194_464
    assert WUSTL_CLASS_COUNTS["Backdoor"] == 212
    assert BINARY_CLASSES == ["normal", "attack"]


@pytest.mark.parametrize("dropped", [["Traffic"], ["sIpId", "Dport"]])
def test_file_missing_schema_columns_names_them_and_the_file(
    tmp_path: Path, small_flows: pl.DataFrame, dropped: list[str]
) -> None:
    path = tmp_path / "partial.csv"
    small_flows.drop(dropped).write_csv(path)
    with pytest.raises(DataError) as err:
        load_wustl_file(path)
    for name in dropped:
        assert name in str(err.value)
    assert str(path) in str(err.value)
    assert "Mean" not in str(err.value).split("missing column(s)")[1]
