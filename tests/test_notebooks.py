"""The notebooks run top to bottom (so they cannot rot)."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["plain_vs_paillier.ipynb"])
def test_notebook_executes(name, tmp_path, monkeypatch):
    monkeypatch.setenv("FEDIDS_NB_ROUNDS", "2")
    monkeypatch.setenv("FEDIDS_NB_OVERRIDES", "dataset.rows=30000")
    monkeypatch.setenv("FEDIDS_NB_CLASSIFICATION", "binary")
    monkeypatch.setenv("FEDIDS_NB_OUT", str(tmp_path))
    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    assert "last-round macro-F1 gap" in outputs
    assert (tmp_path / "paillier" / "metrics.json").is_file()
