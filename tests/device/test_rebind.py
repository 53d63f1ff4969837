"""A device re-binds its last encrypted update to a later version only as an honest buffered
server would ask: same base, later version within the bound, once."""

import pytest

from fedids import protocol
from fedids.crypto.wire import decode_payload
from tests.conftest import small_cfg


def _setup(device, tmp_path):
    """Two Paillier devices through the statistics phase; returns them and round 1's input."""
    from fedids.crypto.codec import CodecParams
    from fedids.server_app import stats_passes
    from strategies.fedids_base import Contribution
    from strategies.paillier_fedavg import PaillierFedAvg

    cfg = small_cfg(
        mode="paillier",
        classification="binary",
        **{"hydra-overrides": "dataset.rows=6000 model.hidden=[8] encoding.bins=8"},
    )
    devices = [device(cfg, 0), device(cfg, 1)]
    run = {"run_path": str(tmp_path)}
    strategy = PaillierFedAvg(codec=CodecParams.from_config(cfg["mode"]), run_id=77)
    totals = []
    for p in range(stats_passes(cfg)):
        contributions = []
        for i, d in enumerate(devices):
            arrays, _, metrics = d.client().fit(totals, {"phase": "stats", "stats_pass": p, **run})
            contributions.append(Contribution(str(i), arrays, metrics))
        totals += strategy.aggregate_counts(
            contributions, kind=protocol.KIND_STATS, tag=p, server_round=0, min_needed=2
        )
    return devices, totals, run


def test_rebind_conditions(device, tmp_path):
    devices, totals, run = _setup(device, tmp_path)
    d = devices[0]
    with pytest.raises(protocol.ProtocolError, match="no trained update"):
        d.client().fit([], {"phase": "rebind", "server_round": 2, "base_version": 0, **run})
    first, _, _ = d.client().fit(totals, {"phase": "train", "server_round": 1, **run})
    header, _ = decode_payload(first)
    assert (header.binding.round, header.binding.base_version) == (1, 0)

    def rebind(round_, base):
        cfg = {"phase": "rebind", "server_round": round_, "base_version": base, **run}
        return d.client().fit([], cfg)

    with pytest.raises(protocol.ProtocolError, match="trained on version 3"):
        rebind(2, 3)
    with pytest.raises(protocol.ProtocolError, match="only later versions"):
        rebind(1, 0)
    with pytest.raises(protocol.ProtocolError, match="only later versions"):
        rebind(40, 0)
    arrays, n, metrics = rebind(3, 0)
    header, _ = decode_payload(arrays)
    assert (header.binding.round, header.binding.base_version) == (3, 0) and n == 1
    assert arrays[1].tobytes() != first[1].tobytes()  # a fresh encryption
    with pytest.raises(protocol.ProtocolError, match="already re-bound"):
        rebind(3, 0)
