"""Shared test helpers: small configs.

Most tests drive clients and strategies in-process (``fedids.inprocess``: 0.3 s instead of
a Ray simulation); a few e2e tests run the real ``flwr run`` path.
"""

from __future__ import annotations

import os

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")


def small_cfg(**run_config):
    from fedids.config import compose_config, to_plain

    rc = {"hydra-overrides": "dataset.rows=6000"}
    rc.update(run_config)
    return to_plain(compose_config(rc))
