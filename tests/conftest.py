"""Shared test helpers: small configs and an in-process driver for Flower rounds.

The driver calls NumPyClient.fit/evaluate and Strategy.aggregate_* directly with
hand-made FitRes/EvaluateRes (0.3 s instead of a Ray simulation); a few e2e tests
run the real `flwr run` path.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")


def small_cfg(**run_config):
    from fedids.config import compose_config, to_plain

    rc = {"hydra-overrides": "dataset.rows=6000"}
    rc.update(run_config)
    return to_plain(compose_config(rc))


@pytest.fixture
def cfg_factory():
    return small_cfg
