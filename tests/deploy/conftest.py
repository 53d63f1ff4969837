"""Fixtures for deployment tests: Paillier keys, an in-process EaaS, real Flower federations.

Every process a fixture starts is stopped by its PID in a finalizer (never by name), so a
failing test leaves no SuperLink, SuperNode or EaaS behind holding a port.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from deploy_helpers import REPO, TEST_KEY_BITS, TOKEN, assert_all_gone

from fedids.crypto.codec import CodecParams
from fedids.crypto.keys import generate_keypair, save_keypair
from fedids.crypto.update import UpdateEncryptor
from fedids.deploy.harness import Federation
from fedids.eaas.server import EaaSServer


@pytest.fixture(scope="session")
def params() -> CodecParams:
    return CodecParams(key_bits=TEST_KEY_BITS, value_bits=16, clip=4.0).validate()


@pytest.fixture(scope="session")
def keypair():
    return generate_keypair(TEST_KEY_BITS)


@pytest.fixture
def eaas(keypair, params) -> Iterator[Callable[..., EaaSServer]]:
    """Factory for in-process EaaS servers on free loopback ports; all shut down after."""
    from fedids.crypto.keys import fingerprint

    servers: list[EaaSServer] = []

    def start(
        encrypt=None, ssl_context=None, token: str = TOKEN, key=None, codec=None
    ) -> EaaSServer:
        public, codec = (key or keypair)[0], codec or params
        enc = UpdateEncryptor(public, codec, workers=1)  # public key only, as a service

        def encrypt_model(request):
            return enc.encrypt_model(
                request.arrays,
                share=request.share,
                binding=request.binding,
                tag=request.binding_tag,
            )

        server = EaaSServer(
            ("127.0.0.1", 0),
            encrypt_v2=encrypt or encrypt_model,
            token=token,
            fingerprint=fingerprint(public),
            key_bits=codec.key_bits,
            ssl_context=ssl_context,
        )
        server.serve_in_thread()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start helper subprocesses (own session); SIGTERM/SIGKILL each by PID afterwards."""
    procs: list[subprocess.Popen[str]] = []

    def start(args: list[str], **kwargs) -> subprocess.Popen[str]:
        env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
        env.update(kwargs.pop("env", {}))
        p = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,
            **kwargs,
        )
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


@pytest.fixture
def federation(tmp_path: Path) -> Iterator[Callable[..., Federation]]:
    """Factory for real SuperLink + SuperNode federations (TLS, node auth); closed by PID."""
    feds: list[Federation] = []

    def start(**kwargs) -> Federation:
        fed = Federation(tmp_path / f"fed{len(feds)}", **kwargs)
        feds.append(fed)
        return fed.start()

    yield start
    for fed in feds:
        fed.close()
        assert_all_gone(fed)


@pytest.fixture(scope="session")
def device_keypair():
    """A production-size (2048-bit) key pair: what configs and SecureChannel accept."""
    return generate_keypair(2048)


@pytest.fixture(scope="session")
def device_fingerprint(device_keypair) -> str:
    """What node-config ``expected-fingerprint`` and ``mode.expected_fingerprint`` pin."""
    from fedids.crypto.keys import fingerprint

    return fingerprint(device_keypair[0])


@pytest.fixture(scope="session")
def device_params() -> CodecParams:
    """The codec of the default ``conf/mode/paillier.yaml`` (what devices and EaaS use)."""
    from fedids.config import compose_config, to_plain

    return CodecParams.from_config(to_plain(compose_config({"mode": "paillier"}))["mode"])


@pytest.fixture(scope="session")
def device_keys(tmp_path_factory: pytest.TempPathFactory, device_keypair) -> Path:
    """The federation's key pair as copied to every device (node-config ``key-dir``)."""
    directory = tmp_path_factory.mktemp("device-keys") / "keys"
    save_keypair(directory, *device_keypair)
    return directory


@pytest.fixture(scope="session")
def deployment(tmp_path_factory: pytest.TempPathFactory, device_keys: Path) -> Iterator[Federation]:
    """One SuperLink (TLS + SuperNode auth) with two registered devices started with
    ``--trusted-entities``, shared by the session (a start costs 15-30 s here).

    Devices get ``CANARY_MARKER_DIR`` in their environment: the canary app used by the
    signed-bundle tests leaves a file there when a device runs it.
    """
    workdir = tmp_path_factory.mktemp("deployment")
    fed = Federation(workdir, env_extra={"CANARY_MARKER_DIR": str(workdir / "canary-ran")})
    try:
        fed.start()
        fed.add_nodes([0, 1], 2, extra_config={"key-dir": str(device_keys)})
        fed.wait_online(2)
        yield fed
    finally:
        fed.close()
        assert_all_gone(fed)
