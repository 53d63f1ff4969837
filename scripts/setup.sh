#!/usr/bin/env bash
# Set up .venv (Python 3.11) with fedids and its test/demo tools. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3.11}"
quiet() { "$@" 2> >(grep -v "^WARNING: Location" >&2); }

if [ ! -x .venv/bin/python ]; then
    echo "[setup] creating .venv with $("$PY" --version)"
    "$PY" -m venv .venv
fi
. .venv/bin/activate
echo "[setup] installing torch 2.13.0 (CPU build where available), then fedids[dev]"
quiet python -m pip install -q --disable-pip-version-check --upgrade pip
# torch first and pinned: a bare range would make pip fetch a multi-GB CUDA build.
quiet python -m pip install -q --disable-pip-version-check "torch==2.13.0"
quiet python -m pip install -q --disable-pip-version-check -e ".[dev]"
# the stix2 / hydra-core antlr4 pins must stay consistent
quiet python -m pip check

# Flower's SuperLink would otherwise `uv sync` the app's dependencies (torch included)
# into a fresh environment for every run; everything is already installed here.
if ! grep -q "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION" .venv/bin/activate; then
    cat >> .venv/bin/activate <<'ENV'
# added by fedids scripts/setup.sh
export FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1
export FLWR_TELEMETRY_ENABLED=0
ENV
fi
echo "[setup] ready: $(python -c 'import flwr, torch, phe, polars; print("flwr", flwr.__version__, "torch", torch.__version__, "polars", polars.__version__)')"
