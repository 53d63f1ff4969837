"""Re-execute the notebooks in place at their default settings, so that the outputs stored
with them (what a code host shows) come from a real execution.

    python notebooks/execute.py            # every notebook here
    python notebooks/execute.py NAME.ipynb

The test suite executes them too, with smaller settings, but never writes them back.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent


def execute(path: Path) -> None:
    for key in [k for k in os.environ if k.startswith("FEDIDS_NB_")]:
        del os.environ[key]  # the defaults written in the notebook, not a test's settings
    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory(prefix="fedids-nb-") as cwd:
        NotebookClient(nb, timeout=3600, kernel_name="python3",
                       resources={"metadata": {"path": cwd}}).execute()
    nbformat.write(nb, path)
    print(f"executed {path}")


if __name__ == "__main__":
    names = sys.argv[1:] or sorted(p.name for p in HERE.glob("*.ipynb"))
    for name in names:
        execute(HERE / name)
