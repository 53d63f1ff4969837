"""The notebooks run top to bottom (so they cannot rot), and are stored with real outputs."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "plain_vs_paillier.ipynb"


def _outputs(nb) -> list[dict]:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def _text(nb) -> str:
    return "".join(o.get("text", "") for o in _outputs(nb))


def _images(nb) -> list[str]:
    return [o["data"]["image/png"] for o in _outputs(nb) if "image/png" in o.get("data", {})]


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
    assert "last-round macro-F1 gap" in _text(nb)
    assert (tmp_path / "paillier" / "metrics.json").is_file()
    for mode in ("plain", "paillier"):
        assert (tmp_path / mode / "report.png").stat().st_size > 20_000
    assert len(_images(nb)) == 2  # the two-run report and one run's report.png


def test_committed_notebook_shows_real_outputs_at_its_defaults():
    """Opened on a code host, the notebook shows plots: outputs of an execution at the
    default settings, with synthetic data called synthetic."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    text = _text(nb)
    assert "3 rounds, multi classification, overrides: 'dataset.rows=60000'" in text, (
        "store the notebook executed at its defaults: "
        "python notebooks/execute.py"
    )
    assert not any(o.get("output_type") == "error" for o in _outputs(nb))
    assert len(_images(nb)) == 2
    assert "last-round macro-F1 gap" in text
    if "dataset 'synthetic'" in text:
        assert "SYNTHETIC (generated flows, not real traffic) data" in text
