#!/usr/bin/env bash
# Set up, lint, and run the whole test suite (starts and stops its own servers).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
echo "[test] ruff"
ruff check fedids strategies tests
echo "[test] pytest"
# Two workers (pytest-xdist). The loopback deployments (tests/deploy) run one after the
# other on one worker, the Flower simulations (tests/e2e, the notebook) one after the other
# on a worker, everything else is spread (tests/conftest.py). Most of the suite's time is
# spent waiting on real Flower, Ray and broker processes. FEDIDS_TEST_WORKERS=0: one process.
exec python -m pytest -q -p no:cacheprovider -n "${FEDIDS_TEST_WORKERS:-2}" --dist loadgroup "$@"
