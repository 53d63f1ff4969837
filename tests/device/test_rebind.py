"""A device re-bases its last update on a newer global version only as an honest buffered
server would ask (same base, later version within the bound, once), and exactly:
``trained + (newest global - global it trained from)``. (Paillier: tests/server/test_buffered.)"""

import numpy as np
import pytest

from fedids import protocol
from tests.conftest import small_cfg


def _passes(cfg):
    from fedids.server_app import stats_passes

    return stats_passes(cfg)


def _setup(device):
    cfg = small_cfg(
        mode="plain",
        classification="binary",
        **{"hydra-overrides": "dataset.rows=4000 model.hidden=[8] encoding.bins=8"},
    )
    devices = [device(cfg, 0), device(cfg, 1)]
    totals = []
    for p in range(_passes(cfg)):
        payloads = [d.client().fit(totals, {"phase": "stats", "stats_pass": p})[0] for d in devices]
        totals += protocol.sum_plain_counts(payloads, kind=2, tag=p, run_id=77, round=0)
    return devices, totals


def test_rebase_conditions_and_arithmetic(device):
    devices, totals = _setup(device)
    d, other = devices
    with pytest.raises(protocol.ProtocolError, match="no trained update"):
        d.client().fit([], {"phase": "rebind", "server_round": 3, "base_version": 0})
    trained, n, _ = d.client().fit(totals, {"phase": "train", "server_round": 1})
    origin = d.client().state.previous_global()
    assert origin is not None and origin[0] == 0  # the initial model it trained from
    theirs, m, _ = other.client().fit(totals, {"phase": "train", "server_round": 1})
    pairs = zip(trained, theirs, strict=True)
    newest = [((a * n + b * m) / (n + m)).astype(np.float32) for a, b in pairs]

    def rebind(round_, base, **extra):
        config = {"phase": "rebind", "server_round": round_, "base_version": base, **extra}
        return d.client().fit(newest, config)

    with pytest.raises(protocol.ProtocolError, match="trained on version 0"):
        rebind(3, 2)
    with pytest.raises(protocol.ProtocolError, match="only later versions"):
        rebind(1, 0)
    with pytest.raises(protocol.ProtocolError, match="only later versions"):
        rebind(40, 0)
    arrays, count, metrics = rebind(2, 0, evaluate_base=True)
    assert count == n and metrics["eval_round"] == 1 and "eval" in metrics
    for got, w, g, o in zip(arrays, trained, newest, origin[1], strict=True):
        np.testing.assert_allclose(got, w + g - o, atol=1e-6)
    with pytest.raises(protocol.ProtocolError, match="already re-based"):
        rebind(2, 0)
