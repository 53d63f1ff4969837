"""Real deployments on loopback: SuperLink with TLS + SuperNode auth, devices, ``flwr run``.

Slow (each run starts Flower processes and a fresh ``flwr-clientapp`` per message), so the
module shares one federation between the plain run, the Paillier run and the refusal test.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from deploy_helpers import REPO, device_config, explain, metrics, run_config

from fedids.deploy.flower import EXIT_NODE_REFUSED, FAB_NOT_SIGNED, FAB_UNVERIFIED, wait_for_log
from fedids.deploy.harness import Federation

pytestmark = pytest.mark.e2e


def test_plain_run_is_refused_by_devices_holding_a_key(
    deployment: Federation, tmp_path: Path
) -> None:
    """A signed fedids bundle, fetched by the SuperLink from the registry, runs on devices
    that accept only bundles signed by the federation's publisher key; asked for
    mode='plain' by the run-config, devices whose node-config has a key-dir refuse: no
    plaintext update reaches the server and the run fails naming the node-config key."""
    downloads = deployment.registry.served["download"]
    result = deployment.run(REPO, run_config(tmp_path, "plain"), timeout=240)
    assert not result.timed_out, explain(result, deployment)
    assert "flwr run @fedids/fedids==" in result.output.splitlines()[0]  # the signed bundle
    assert deployment.registry.served["download"] == downloads + 1
    for node in deployment.nodes:
        command = node.log(tail=None).splitlines()[0]
        assert f"--trusted-entities {deployment.trusted_file}" in command, command
        assert FAB_UNVERIFIED not in node.log(tail=None) and FAB_NOT_SIGNED not in node.log()
    status = deployment.status(result)
    assert status["status"] == "finished:failed", status
    assert "allow-plain=true" in status["status-details"], status
    doc = metrics(tmp_path, "plain")
    assert doc["status"] == "failed" and "allow-plain=true" in doc["error"]
    assert doc["rounds"] == []
    assert not (tmp_path / "plain" / "global_parameters.npz").exists()
    # the connection the CLI used is TLS-verified against our CA, not insecure
    toml = (deployment.flwr_home / "config.toml").read_text()
    assert "root-certificates" in toml and "insecure" not in toml


def test_unregistered_supernode_is_refused(deployment: Federation) -> None:
    node = deployment.add_node(0, 2, register=False)
    code = node.wait(60)
    log = node.log()
    assert code is not None, f"unregistered node still running:\n{log}"
    assert code != 0 and f"Exit Code: {EXIT_NODE_REFUSED}" in log, log


def test_too_few_devices_stops_instead_of_waiting(deployment: Federation, tmp_path: Path) -> None:
    """Asking for 3 devices when 2 exist must end the run after about round_timeout, with a
    message naming min_available_clients; Flower's stock client manager would wait a day."""
    # 30 s: in this Flower flow a device is asked for initial parameters first, and a fresh
    # flwr-clientapp (torch import, data) took more than 10 s on the shared 2-core machine
    hydra = "federation.min_available_clients=3 federation.round_timeout=30"
    result = deployment.run(REPO, run_config(tmp_path, "few", hydra=hydra), timeout=120)
    assert not result.timed_out, explain(result, deployment)
    status = deployment.status(result)
    assert status["status"] == "finished:failed", status
    assert "min_available_clients" in status["status-details"], status
    assert metrics(tmp_path, "few")["status"] != "completed"
    assert deployment.server_run_processes() == []  # the failed run's server side is gone


def test_paillier_deployment_mixing_eaas_and_local(
    federation, device_keys: Path, device_fingerprint: str, tmp_path: Path
) -> None:
    """Device 0's node-config names its site's EaaS (which fails its first request, so in
    round 1 device 0 falls back to local encryption as its node-config allows); device 1
    encrypts locally. The strategy sums both kinds; the server pins the key's fingerprint."""
    from fedids.config import compose_config, to_plain
    from fedids.eaas.server import build_server

    pub = tmp_path / "eaas-key"
    pub.mkdir()
    (pub / "public.json").write_bytes((device_keys / "public.json").read_bytes())
    mode = to_plain(compose_config({"mode": "paillier"}, ["mode.workers=1"]))["mode"]
    token_file = tmp_path / "token"
    token_file.write_text("deploy-test-token\n")
    server = build_server(pub, mode, "deploy-test-token", port=0)
    calls = {"n": 0}
    real_encrypt = server.encrypt_v2

    def flaky(request):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("simulated EaaS outage")
        return real_encrypt(request)

    server.encrypt_v2 = flaky
    server.serve_in_thread()
    try:
        fed = federation()
        eaas = {
            "eaas-url": server.url,
            "eaas-token-file": str(token_file),
            "eaas-fallback-local": "true",
        }
        fed.add_node(0, 2, extra_config=device_config(device_keys, **_dashes(eaas)))
        fed.add_node(1, 2, extra_config=device_config(device_keys))
        fed.wait_online(2)
        hydra = f"mode.expected_fingerprint={device_fingerprint}"
        rc = run_config(tmp_path, "paillier", mode="'paillier'", hydra=hydra)
        result = fed.run(REPO, rc, timeout=400)
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 0 and "[SUMMARY]" in result.output, explain(result, fed)
    doc = metrics(tmp_path, "paillier")
    assert doc["status"] == "completed" and doc["mode"] == "paillier"
    assert [r["round"] for r in doc["rounds"]] == [1, 2]
    for r in doc["rounds"]:
        assert r["fit_clients"] == 2 and r["rejected_updates"] == 0, r
    assert calls["n"] == 2 and server.requests_served == 1  # 1 outage + 1 encrypted
    assert doc["rounds"][-1]["accuracy"] > 0.5  # decrypted aggregates make a working model
    assert "global_parameters.npz" not in {p.name for p in (tmp_path / "paillier").iterdir()}


def _dashes(values: dict) -> dict:
    """device_config takes policy keys with underscores."""
    return {k.replace("-", "_"): v for k, v in values.items()}


# federation.round_timeout (s): how long a round waits for a dead device; also the bound on a
# device's first answer, whose flwr-clientapp start took more than 15 s on a busy machine
DROPOUT_TIMEOUT = 45


def _start_two_devices(federation, **node: object) -> Federation:
    fed = federation()
    fed.add_nodes([0, 1], 2, extra_config=node or None)
    fed.wait_online(2)
    return fed


def test_dropout_with_min_one_device_completes(
    federation, device_keys: Path, device_fingerprint: str, tmp_path: Path
) -> None:
    """Device 1 crashes (SIGKILL) as round 2 starts; with min 1 the run goes on and completes.

    In Paillier mode: round 2's encrypted aggregate holds only device 0's update, weighted
    over whoever contributed, and device 0 decrypts and evaluates it. Decrypting a
    one-contributor aggregate is something a site must allow in its own node-config
    (``min-contributors=1``); by default devices refuse it (tests/server/test_paillier_run.py)."""
    fed = _start_two_devices(federation, **device_config(device_keys, min_contributors=1))
    mins = "federation.min_fit_clients=1 federation.min_evaluate_clients=1"
    hydra = (
        f"{mins} federation.min_available_clients=1 federation.round_timeout={DROPOUT_TIMEOUT} "
        f"mode.expected_fingerprint={device_fingerprint}"
    )
    run = fed.start_run(REPO, run_config(tmp_path, "drop1", mode="'paillier'", hydra=hydra))
    started = time.monotonic()
    assert wait_for_log(run, "[ROUND 2]", 150), run.log()
    fed.nodes[1].kill()
    result = fed.finish(run, 240, started)
    assert result.returncode == 0 and "[SUMMARY]" in result.output, explain(result, fed)
    doc = metrics(tmp_path, "drop1")
    assert doc["status"] == "completed"
    assert [r["fit_clients"] for r in doc["rounds"]] == [2, 1]
    assert doc["rounds"][1]["fit_failures"] == 1
    # a correctly decrypted model: a wrong aggregate decodes to weights scattered over
    # [-clip, clip], whose logits make the loss explode
    assert doc["rounds"][1]["accuracy"] > 0.9 and doc["rounds"][1]["loss"] < 1.0


def test_dropout_below_min_stops_clearly(federation, tmp_path: Path) -> None:
    """With min 2, a crashed device stops the run with a message naming the minimum, within
    a bound set by round_timeout (never a hang), and metrics.json is not marked completed.
    (Plain mode: these devices hold no key and their node-config allows plaintext.)"""
    fed = _start_two_devices(federation, **device_config(None, allow_plain="true"))
    hydra = f"federation.round_timeout={DROPOUT_TIMEOUT}"
    run = fed.start_run(REPO, run_config(tmp_path, "drop2", rounds=3, hydra=hydra))
    started = time.monotonic()
    assert wait_for_log(run, "[ROUND 1]", 150), run.log()
    fed.nodes[1].kill()
    result = fed.finish(run, 150, started)
    assert not result.timed_out, explain(result, fed)
    assert fed.server_run_processes() == []
    # `flwr run --stream` exits 0 even then: the SuperLink's run record says what happened
    status = fed.status(result)
    assert status["status"] == "finished:failed", status
    assert "at least 2 needed" in status["status-details"], status
    assert "[SUMMARY]" not in result.output
    doc = metrics(tmp_path, "drop2")
    assert doc["status"] == "failed" and "at least 2 needed" in doc["error"]
    assert len(doc["rounds"]) <= 1
