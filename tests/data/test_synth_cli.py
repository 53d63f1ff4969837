"""``fedids synth``: writes a CSV atomically and says the data is synthetic."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from fedids.cli import main
from fedids.data.loaders import load_wustl_file
from fedids.data.synth import class_counts, generate


def test_writes_csv_creates_parents_and_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "deep" / "er" / "flows.csv"
    assert main(["synth", "--rows", "700", "--seed", "3", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "700 rows" in text and "SYNTHETIC" in text and str(out) in text
    for name, n in class_counts(700).items():
        assert f"{name} {n}" in text
    written = pl.read_csv(out)
    expected = generate(700, 3)
    assert written.columns == expected.columns and written.height == 700
    assert written["SrcAddr"].equals(expected["SrcAddr"])
    assert (written["SrcBytes"] == expected["SrcBytes"]).all()
    assert [p.name for p in out.parent.iterdir()] == ["flows.csv"]  # no temp file left
    assert load_wustl_file(out).synthetic


def test_overwrites_existing_file(tmp_path: Path) -> None:
    out = tmp_path / "flows.csv"
    out.write_text("old")
    assert main(["synth", "--rows", "50", "--out", str(out)]) == 0
    assert pl.read_csv(out).height == 50


def test_directory_as_output_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["synth", "--rows", "50", "--out", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


@pytest.mark.parametrize("rows", ["0", "-3", "many"])
def test_bad_rows_are_usage_errors(tmp_path: Path, rows: str) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["synth", "--rows", rows, "--out", str(tmp_path / "x.csv")])
    assert exc.value.code == 2
    assert not (tmp_path / "x.csv").exists()
