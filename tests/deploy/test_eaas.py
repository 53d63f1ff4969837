"""EaaS on loopback: auth, failures, fallback policy, TLS, and wire-format identity."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from deploy_helpers import TOKEN, python_cmd, wait_for

from fedids.crypto.binding import Binding
from fedids.crypto.update import AggregateDecryptor, UpdateEncryptor
from fedids.crypto.vector import decrypt_many
from fedids.crypto.wire import WireHeader, decode_payload
from fedids.deploy.certs import write_certs
from fedids.deploy.processes import free_port
from fedids.eaas import wire
from fedids.eaas.client import EaaSError, encrypt_v2, remote_encrypt_v2
from fedids.eaas.server import server_ssl_context

B = Binding(run_id=4, round=1, base_version=0, kind=Binding.MODEL)


def _weights(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 1, (20, 7)).astype(np.float32), rng.normal(0, 1, 7).astype(np.float32)]


def _request(keypair, params, weights=None) -> wire.EncryptRequest:
    """What a device sends: its weights, its share, the binding and the tag it computed."""
    tag = AggregateDecryptor(keypair[1], params, workers=1).binding_tag(B)
    return wire.EncryptRequest(wire.OP_MODEL, weights or _weights(), B, tag, share=0.5)


def _local(keypair, params) -> list[np.ndarray]:
    enc = UpdateEncryptor(keypair[0], params, workers=1, private_key=keypair[1])
    return enc.encrypt_model(_weights(), share=0.5, binding=B)


def _plaintexts(arrays, private_key) -> list[int]:
    _, ciphertexts = decode_payload(arrays)
    return decrypt_many(private_key, ciphertexts, None)


def test_eaas_payload_matches_local_encryption(eaas, keypair, params) -> None:
    server = eaas()
    remote = remote_encrypt_v2(server.url, TOKEN, _request(keypair, params), timeout=10)
    local = _local(keypair, params)
    assert [a.dtype for a in remote] == [a.dtype for a in local] == [np.int64, np.uint8]
    assert [a.shape for a in remote] == [a.shape for a in local]
    # same header (key id, codec, sizes, binding), fresh randomness, identical plaintexts inside
    assert np.array_equal(remote[0], local[0])
    assert not np.array_equal(remote[1], local[1])
    assert _plaintexts(remote, keypair[1]) == _plaintexts(local, keypair[1])
    assert server.requests_served == 1


def test_wrong_token_is_a_clear_auth_error(eaas, keypair, params) -> None:
    server = eaas()
    with pytest.raises(EaaSError, match="refused the bearer token") as err:
        remote_encrypt_v2(server.url, "wrong-token", _request(keypair, params), timeout=10)
    assert err.value.kind == "auth" and err.value.status == 401
    assert "wrong-token" not in str(err.value)
    assert server.requests_served == 0


def test_missing_auth_header_is_refused(eaas, keypair, params) -> None:
    server = eaas()
    req = urllib.request.Request(
        server.url + wire.ENCRYPT_V2_PATH,
        data=wire.dumps_request(_request(keypair, params)),
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 401
    assert err.value.headers["WWW-Authenticate"].startswith("Bearer")


def test_service_down_is_a_clear_error(keypair, params) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(EaaSError, match="unreachable") as err:
        remote_encrypt_v2(url, TOKEN, _request(keypair, params), timeout=5)
    assert err.value.kind == "unavailable"


def test_server_side_failure_and_bad_response(eaas, keypair, params) -> None:
    def broken(request):
        raise RuntimeError("boom")

    request = _request(keypair, params)
    with pytest.raises(EaaSError, match="HTTP 500") as err:
        remote_encrypt_v2(eaas(encrypt=broken).url, TOKEN, request, timeout=10)
    assert err.value.kind == "unavailable"
    # a service that echoes plaintext back must never be mistaken for encryption
    with pytest.raises(EaaSError, match="did not return an encrypted payload") as err:
        remote_encrypt_v2(eaas(encrypt=lambda r: r.arrays).url, TOKEN, request, timeout=10)
    assert err.value.kind == "bad_response"


def test_bad_requests_are_rejected(eaas, keypair, params) -> None:
    server = eaas()
    nan = _request(keypair, params, [np.array([1.0, np.nan], dtype=np.float32)])
    with pytest.raises(EaaSError, match="HTTP 400") as err:
        remote_encrypt_v2(server.url, TOKEN, nan, 10)
    assert err.value.kind == "rejected"
    req = urllib.request.Request(
        server.url + wire.ENCRYPT_V2_PATH,
        data=wire.dumps([np.arange(5)]),  # bare integers: no request header, not weights
        headers={"Authorization": f"Bearer {TOKEN}"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as http_err:
        urllib.request.urlopen(req, timeout=10)
    assert http_err.value.code == 400


def test_key_mismatch_is_detected(eaas, keypair, params) -> None:
    from fedids.crypto.keys import fingerprint

    server = eaas()
    fp, request = fingerprint(keypair[0]), _request(keypair, params)
    assert remote_encrypt_v2(server.url, TOKEN, request, 10, expected_fingerprint=fp)
    with pytest.raises(EaaSError, match="encrypts with key") as err:
        remote_encrypt_v2(server.url, TOKEN, request, 10, expected_fingerprint="00" * 32)
    assert err.value.kind == "bad_response"


def test_fallback_only_when_configured(keypair, params, eaas) -> None:
    calls = []

    def local():
        calls.append(1)
        return _local(keypair, params)

    request = _request(keypair, params)
    down = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(EaaSError):
        encrypt_v2(request, url=down, token=TOKEN, timeout=5)
    report: dict = {}
    arrays = encrypt_v2(request, url=down, token=TOKEN, timeout=5, fallback=local, report=report)
    assert len(calls) == 1 and report["encrypted_by"] == "local-fallback"
    assert "unreachable" in report["eaas_error"]
    assert np.array_equal(arrays[0], _local(keypair, params)[0])
    # a wrong token is a misconfiguration: never silently encrypted locally
    server = eaas()
    with pytest.raises(EaaSError) as err:
        encrypt_v2(request, url=server.url, token="nope", fallback=local)
    assert err.value.kind == "auth" and len(calls) == 1
    report = {}
    encrypt_v2(request, url=server.url, token=TOKEN, fallback=local, report=report)
    assert len(calls) == 1 and report == {"encrypted_by": "eaas"}


def test_tls_with_ca_file(eaas, keypair, params, tmp_path: Path) -> None:
    certs = write_certs(tmp_path, ["localhost"], ["127.0.0.1"])
    server = eaas(ssl_context=server_ssl_context(certs.server_cert, certs.server_key))
    assert server.url.startswith("https://")
    request = _request(keypair, params)
    arrays = remote_encrypt_v2(server.url, TOKEN, request, 10, ca_file=certs.ca_cert)
    assert WireHeader.from_array(arrays[0]).n_values == 147
    with pytest.raises(EaaSError, match="not trusted") as err:
        remote_encrypt_v2(server.url, TOKEN, request, 10)  # system CAs do not know ours
    assert err.value.kind == "unavailable"
    with pytest.raises(EaaSError):  # plain HTTP to a TLS port
        remote_encrypt_v2(server.url.replace("https", "http"), TOKEN, request, 5)


def test_cli_service_end_to_end(
    spawn, device_keys: Path, tmp_path: Path, device_keypair, device_params
) -> None:
    """`fedids eaas` as a process: public key only, token from file and never printed."""
    pub_dir = tmp_path / "pub"
    pub_dir.mkdir()
    (pub_dir / "public.json").write_bytes((device_keys / "public.json").read_bytes())
    token_file = tmp_path / "eaas.token"
    port = free_port()
    proc = spawn(
        python_cmd(
            "eaas",
            "--key-dir",
            str(pub_dir),
            "--token-file",
            str(token_file),
            "--init-token",
            "--port",
            str(port),
            "-o",
            "mode.workers=1",
        )
    )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        assert proc.poll() is None, proc.stdout.read()
        try:
            with urllib.request.urlopen(url + wire.HEALTH_PATH, timeout=1) as r:
                return json.load(r)["status"] == "ok"
        except OSError:
            return False

    wait_for(healthy, 60, "fedids eaas to answer /v1/health")
    assert oct(token_file.stat().st_mode & 0o777) == "0o600"
    token = token_file.read_text().strip()
    request = _request(device_keypair, device_params)
    arrays = remote_encrypt_v2(url, token, request, 30)
    local = _local(device_keypair, device_params)
    assert _plaintexts(arrays, device_keypair[1]) == _plaintexts(local, device_keypair[1])
    with pytest.raises(EaaSError, match="refused"):
        remote_encrypt_v2(url, token[::-1], request, 30)
    proc.terminate()
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
    assert token not in out and token[::-1] not in out
    assert "POST /v2/encrypt" in out and "401" in out


def test_strategy_aggregates_eaas_and_local_updates(device_keys, device_params, tmp_path) -> None:
    """Device 0 encrypts through its site's EaaS (named in ITS node-config), device 1 locally;
    the strategy cannot tell them apart and the devices decrypt the exact weighted average."""
    import shutil
    from types import SimpleNamespace

    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays

    from fedids.device.channel import PaillierChannel
    from fedids.device.policy import DevicePolicy
    from fedids.eaas.server import build_server
    from strategies.paillier_fedavg import PaillierFedAvg

    params, key_dir = device_params, device_keys
    mode = {
        "name": "paillier",
        "key_bits": params.key_bits,
        "value_bits": params.value_bits,
        "clip": params.clip,
        "max_clients": params.max_clients,
        "workers": 1,
        "precompute": False,
    }
    public_only = tmp_path / "eaas-key"
    public_only.mkdir()
    shutil.copy(key_dir / "public.json", public_only / "public.json")
    server = build_server(public_only, mode, TOKEN, port=0)
    server.serve_in_thread()
    try:
        token_file = tmp_path / "token"
        token_file.write_text(TOKEN + "\n")
        node = {"partition-id": 0, "num-partitions": 2, "key-dir": str(key_dir)}
        via_eaas = PaillierChannel(
            DevicePolicy.from_node_config(
                {**node, "eaas-url": server.url, "eaas-token-file": str(token_file)},
                simulation=False,
            ),
            mode,
            run_id=5,
            run_path="",
        )
        local = PaillierChannel(
            DevicePolicy.from_node_config({**node, "partition-id": 1}, simulation=False),
            mode,
            run_id=5,
            run_path="",
        )
        w0, w1 = _weights(0), _weights(1)
        results = []
        for cid, (channel, weights, share) in enumerate([(via_eaas, w0, 0.75), (local, w1, 0.25)]):
            arrays = channel.send_model(weights, share=share, round_=1, base_version=0)
            res = FitRes(Status(Code.OK, ""), ndarrays_to_parameters(arrays), 1, channel.metrics())
            results.append((SimpleNamespace(cid=str(cid)), res))
        assert server.requests_served == 1  # device 0 really went through the service
        assert results[0][1].metrics["encrypted_by"] == "eaas"
    finally:
        server.shutdown()
        server.server_close()

    strategy = PaillierFedAvg(codec=params, run_id=5, min_fit_clients=2, min_available_clients=2)
    aggregate, metrics = strategy.aggregate_fit(1, results, [])
    assert metrics["fit_clients"] == 2 and not strategy.last_rejections
    got = local.receive_model(
        parameters_to_ndarrays(aggregate), [w.shape for w in w0], round_=1
    ).values
    for g, a, b in zip(got, w0, w1, strict=True):
        expected = 0.75 * np.clip(a, -4, 4) + 0.25 * np.clip(b, -4, 4)
        np.testing.assert_allclose(g, expected, atol=2 * params.step)
