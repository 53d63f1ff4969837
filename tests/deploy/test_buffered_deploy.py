"""Buffered aggregation in a real loopback deployment: one SuperNode is much slower.

Three SuperNodes (TLS, node auth, the federation's Paillier key in each node-config); the run
asks for ``aggregation='buffered'`` and slows partition 2 (6x) on the device side. The fast two
make versions without it (K=2), the slow one's late updates are re-bound by that device and
join the next version with staleness 1; every version is evaluated by all three devices.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from deploy_helpers import REPO, device_config, explain, metrics

pytestmark = pytest.mark.e2e

#: small model; enough local work that the slowed device's sleep outweighs Flower's
#: per-message start-up (a fresh flwr-clientapp process per message)
SMALL = "dataset.rows=20000 local_epochs=2 model.hidden=[16] encoding.bins=8"


def test_buffered_paillier_deployment_with_a_slow_supernode(
    federation, device_keys: Path, device_fingerprint: str, tmp_path: Path
) -> None:
    fed = federation()
    fed.add_nodes([0, 1, 2], 3, extra_config=device_config(device_keys))
    fed.wait_online(3)
    hydra = " ".join(
        [
            SMALL,
            f"mode.expected_fingerprint={device_fingerprint}",
            "mode.max_multiplier=4",
            "aggregation.slowdown={2:6.0}",
            "federation.min_available_clients=3",
            "federation.round_timeout=600",  # also the TTL of every Flower message
        ]
    )
    versions = 2  # version 1 without the slow device, version 2 with its re-based update
    rc = (
        f"num-server-rounds={versions} run-dir='{tmp_path}' run-name='buffered' "
        f"mode='paillier' aggregation='buffered' classification='binary' "
        f"hydra-overrides='{hydra}'"
    )
    result = fed.run(REPO, rc, timeout=900)
    assert result.returncode == 0 and "[SUMMARY]" in result.output, explain(result, fed)
    assert fed.status(result)["status"] == "finished:completed", explain(result, fed)
    doc = metrics(tmp_path, "buffered")
    assert doc["status"] == "completed" and doc["mode"] == "paillier", doc.get("error")
    assert doc["aggregation"]["name"] == "buffered" and doc["aggregation"]["buffer_size"] == 2
    rounds = doc["rounds"]
    assert [r["round"] for r in rounds] == list(range(1, versions + 1))
    for r in rounds:
        assert r["evaluate_clients"] == 3 and r["rejected_updates"] == 0, r
        devices = [c["device"] for c in r["contributors"]]
        assert len(devices) == len(set(devices)) == r["fit_clients"] >= 2
        assert all(0 <= c["staleness"] <= 1 for c in r["contributors"])
    # the fast devices moved on without the slow one, whose late updates still counted
    assert any(r["fit_clients"] == 2 for r in rounds[:-1]), rounds
    stale = [c for r in rounds for c in r["contributors"] if c["staleness"] == 1]
    assert stale and all(c["rebound"] and c["multiplier"] == 3 for c in stale), rounds
    assert rounds[-1]["trigger"] == "final" and rounds[-1]["fit_clients"] == 3
    assert rounds[-1]["accuracy"] > 0.5  # the decrypted aggregates make a working model
