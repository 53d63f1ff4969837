#!/usr/bin/env bash
# Set up, lint, and run the whole test suite (starts and stops its own servers).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
echo "[test] ruff"
ruff check fedids strategies tests
echo "[test] pytest"
# Two workers, one test file each at a time (a file's tests share its fixtures: brokers,
# federations). Most of the suite's time is spent waiting on real Flower, Ray and broker
# processes, so two workers halve it even on 2 cores. FEDIDS_TEST_WORKERS=0: one process.
exec python -m pytest -q -p no:cacheprovider -n "${FEDIDS_TEST_WORKERS:-2}" --dist loadfile "$@"
