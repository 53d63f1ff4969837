"""Fixtures for the data-layer tests: small synthetic tables and files."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from fedids.data.synth import generate


@pytest.fixture(scope="session")
def small_flows() -> pl.DataFrame:
    """1,500 synthetic WUSTL-schema rows (every class present)."""
    return generate(1500, 5)


@pytest.fixture
def wustl_csv(tmp_path: Path, small_flows: pl.DataFrame) -> Path:
    """``small_flows`` written as a CSV file."""
    path = tmp_path / "wustl.csv"
    small_flows.write_csv(path)
    return path
