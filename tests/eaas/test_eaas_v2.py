"""EaaS, protocol v2: the device's share, binding and binding tag travel in the request, and
the service's payloads sum and decrypt like local ones. In-process server on loopback."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fedids.crypto import vector
from fedids.crypto.codec import Binding, CodecParams
from fedids.crypto.keys import fingerprint, generate_keypair, save_keypair
from fedids.crypto.update import AggregateDecryptor, UpdateEncryptor
from fedids.eaas import wire
from fedids.eaas.client import EaaSError, check_token, encrypt_v2, remote_encrypt_v2
from fedids.eaas.server import build_server
from strategies.homomorphic import parse_update, sum_updates

TOKEN = "eaas-v2-test-token-0123456789"
MODE = {"key_bits": 2048, "value_bits": 16, "clip": 4.0, "max_clients": 16, "workers": 1}
B = Binding(run_id=9, round=2, base_version=1, kind=Binding.MODEL)
SHAPES = [(20, 7), (7,)]


def _weights(seed):
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 1, s).astype(np.float32) for s in SHAPES]


@pytest.fixture(scope="module")
def keypair():
    return generate_keypair(2048)  # the service reads its codec from a production config


@pytest.fixture(scope="module")
def params():
    return CodecParams.from_config(MODE)


@pytest.fixture
def service(keypair, tmp_path):
    save_keypair(tmp_path / "keys", *keypair)
    (tmp_path / "pub").mkdir()
    (tmp_path / "pub" / "public.json").write_bytes((tmp_path / "keys/public.json").read_bytes())
    server = build_server(tmp_path / "pub", MODE, TOKEN, port=0)
    server.serve_in_thread()
    yield server
    server.shutdown()
    server.server_close()
    vector.shutdown_shared_pools()


def test_model_and_counts_through_the_service_sum_with_local_ones(service, keypair, params):
    pub, priv = keypair
    dec = AggregateDecryptor(priv, params, workers=1)
    request = wire.EncryptRequest(wire.OP_MODEL, _weights(0), B, dec.binding_tag(B), share=0.75)
    remote = remote_encrypt_v2(
        service.url, TOKEN, request, 60, expected_fingerprint=fingerprint(pub)
    )
    local = UpdateEncryptor(pub, params, workers=1, private_key=priv).encrypt_model(
        _weights(1), share=0.25, binding=B
    )
    parsed = [parse_update(a, params=params, n=pub.n, expect=B) for a in (remote, local)]
    out, info = dec.decrypt_model(sum_updates(parsed, [1, 1], binding=B), SHAPES, expect=B)
    assert info.contributors == 2 and info.share_total == pytest.approx(1.0, abs=1e-9)
    exact = [
        0.75 * np.clip(a, -4, 4) + 0.25 * np.clip(b, -4, 4)
        for a, b in zip(_weights(0), _weights(1), strict=True)
    ]
    assert max(float(np.abs(o - e).max()) for o, e in zip(out, exact, strict=True)) <= (
        info.error_bound
    )
    stats = Binding(9, 0, 0, Binding.STATS, tag=1)
    counts = np.array([3, 0, 7, 2**31], dtype=np.int64)
    req = wire.EncryptRequest(wire.OP_COUNTS, [counts], stats, dec.binding_tag(stats))
    agg = sum_updates(
        [parse_update(remote_encrypt_v2(service.url, TOKEN, req, 60), params=params, n=pub.n)],
        [1],
        binding=stats,
    )
    total, info = dec.decrypt_counts(agg, 4, expect=stats)
    np.testing.assert_array_equal(total, counts)
    assert service.requests_served == 2


def test_wrong_tag_makes_an_aggregate_devices_refuse(service, keypair, params):
    """The service cannot mint tags: one made for another round is caught on decryption."""
    pub, priv = keypair
    dec = AggregateDecryptor(priv, params, workers=1)
    wrong = dec.binding_tag(Binding(9, 1, 0, Binding.MODEL))
    request = wire.EncryptRequest(wire.OP_MODEL, _weights(0), B, wrong, share=0.5)
    arrays = remote_encrypt_v2(service.url, TOKEN, request, 60)
    agg = sum_updates([parse_update(arrays, params=params, n=pub.n)], [1], binding=B)
    with pytest.raises(ValueError, match="binding tag does not match"):
        dec.decrypt_model(agg, SHAPES)


def test_bad_requests_are_400(service):
    bad_share = wire.EncryptRequest(wire.OP_MODEL, _weights(0), B, 1, share=1.5)
    with pytest.raises(EaaSError, match="HTTP 400.*share") as err:
        remote_encrypt_v2(service.url, TOKEN, bad_share, 60)
    assert err.value.kind == "rejected"
    negative = wire.EncryptRequest(
        wire.OP_COUNTS, [np.array([-1])], Binding(9, 0, 0, Binding.EVAL), 1
    )
    with pytest.raises(EaaSError, match="HTTP 400"):
        remote_encrypt_v2(service.url, TOKEN, negative, 60)
    with pytest.raises(wire.WireError, match="version 2"):
        wire.loads_request(wire.dumps([np.zeros(3, np.int64), np.zeros(2)]))


def test_a_key_file_given_as_token_is_refused_without_quoting_it(keypair, service):
    """Issue 9: p and q once reached an exception message through the token path."""
    pub, priv = keypair
    doc = json.dumps({"p": format(priv.p, "x"), "q": format(priv.q, "x")}, indent=2)
    with pytest.raises(EaaSError) as err:
        check_token(doc)
    assert err.value.kind == "auth"
    request = wire.EncryptRequest(wire.OP_MODEL, _weights(0), B, 1, share=0.5)
    with pytest.raises(EaaSError) as err:
        remote_encrypt_v2(service.url, doc, request, 10)
    for secret in (priv.p, priv.q):
        assert format(secret, "x")[:12] not in str(err.value)
    # a bad token is a credential problem: never papered over by the local fallback
    with pytest.raises(EaaSError):
        encrypt_v2(request, url=service.url, token=doc, fallback=lambda: pytest.fail("fallback"))


def test_fallback_when_the_service_is_down(keypair, params):
    from fedids.deploy.processes import free_port

    pub, priv = keypair
    local = UpdateEncryptor(pub, params, workers=1, private_key=priv)
    request = wire.EncryptRequest(wire.OP_MODEL, _weights(0), B, 1, share=0.5)
    report: dict = {}
    arrays = encrypt_v2(
        request,
        url=f"http://127.0.0.1:{free_port()}",
        token=TOKEN,
        timeout=5,
        fallback=lambda: local.encrypt_model(_weights(0), share=0.5, binding=B),
        report=report,
    )
    assert report["encrypted_by"] == "local-fallback" and "unreachable" in report["eaas_error"]
    assert parse_update(arrays, params=params, n=pub.n).binding == B
