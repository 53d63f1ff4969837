#!/usr/bin/env bash
# The main job: set up, then a federated Paillier run on synthetic WUSTL-schema data,
# followed by detection on held-out flows with STIX alerts over a local Kafka broker.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
exec fedids demo "$@"
