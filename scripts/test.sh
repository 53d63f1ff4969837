#!/usr/bin/env bash
# Set up, lint, and run the whole test suite (starts and stops its own servers).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
echo "[test] ruff"
ruff check fedids strategies tests
echo "[test] pytest"
exec python -m pytest -q -p no:cacheprovider "$@"
