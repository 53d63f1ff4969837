"""Unit tests for fedids.deploy.certs and ``fedids certs``: SAN, chain, modes, node keys."""

from __future__ import annotations

import shutil
import socket
import ssl
import stat
import subprocess
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.verification import PolicyBuilder, Store

from fedids.cli import main
from fedids.deploy.certs import make_supernode_key, san_entries, write_certs


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_certs_san_modes_and_chain(tmp_path: Path) -> None:
    paths = write_certs(tmp_path, ["localhost", "link.plant"], ["127.0.0.1", "::1"])
    assert _mode(paths.server_key) == 0o600
    assert _mode(paths.ca_key) == 0o600
    cert = x509.load_pem_x509_certificate(paths.server_cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "link.plant"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    # without being asked, loopback is always in (the SuperLink's helpers dial 127.0.0.1)
    other = write_certs(tmp_path / "b", ["link.plant"], ["10.0.0.5"])
    assert san_entries(other.server_cert) == [
        "link.plant",
        "localhost",
        "10.0.0.5",
        "127.0.0.1",
        "::1",
    ]
    bare = write_certs(tmp_path / "c", ["link.plant"], [], loopback=False)
    assert san_entries(bare.server_cert) == ["link.plant"]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    # the chain validates as a TLS server certificate for both a name and an IP in the SAN
    ca = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    store = Store([ca])
    for subject in (
        x509.DNSName("link.plant"),
        x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1")),
    ):
        PolicyBuilder().store(store).build_server_verifier(subject).verify(cert, [])


def _tls_handshake(paths, server_hostname: str) -> None:
    """Handshake with a loopback TLS server using server.pem/key, trusting only ca.crt."""
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(paths.server_cert, paths.server_key)
    lsock = socket.create_server(("127.0.0.1", 0))
    port = lsock.getsockname()[1]

    def serve() -> None:
        conn, _ = lsock.accept()
        try:
            with sctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)
        except (ssl.SSLError, OSError):
            pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    cctx = ssl.create_default_context(cafile=str(paths.ca_cert))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with cctx.wrap_socket(raw, server_hostname=server_hostname) as tls:
                tls.sendall(b"x")
    finally:
        t.join(5)
        lsock.close()


def test_tls_handshake_checks_san(tmp_path: Path) -> None:
    paths = write_certs(tmp_path, ["localhost"], ["127.0.0.1"])
    _tls_handshake(paths, "localhost")
    _tls_handshake(paths, "127.0.0.1")
    with pytest.raises(ssl.SSLCertVerificationError):
        _tls_handshake(paths, "not-in-san.example")
    loopless = write_certs(tmp_path / "b", ["link.plant"], ["10.0.0.5"], loopback=False)
    with pytest.raises(ssl.SSLCertVerificationError):
        _tls_handshake(loopless, "127.0.0.1")


def test_ca_reused_and_server_cert_not_clobbered(tmp_path: Path) -> None:
    first = write_certs(tmp_path, ["localhost"], [], loopback=False)
    ca_before = first.ca_cert.read_bytes()
    with pytest.raises(FileExistsError):
        write_certs(tmp_path, ["localhost"], [])
    second = write_certs(tmp_path, ["other"], ["10.0.0.5"], overwrite=True)
    assert second.ca_cert.read_bytes() == ca_before
    ca = x509.load_pem_x509_certificate(ca_before)
    x509.load_pem_x509_certificate(second.server_cert.read_bytes()).verify_directly_issued_by(ca)


def test_server_cert_needs_a_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one"):
        write_certs(tmp_path, [], [], loopback=False)
    with pytest.raises(ValueError, match="not an IP"):
        write_certs(tmp_path, [], ["300.1.1.1"])


def test_supernode_key_is_openssh_p384(tmp_path: Path) -> None:
    private, public = make_supernode_key(tmp_path, "sn0")
    assert _mode(private) == 0o600
    key = serialization.load_ssh_private_key(private.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.curve.name == "secp384r1"
    pub = serialization.load_ssh_public_key(public.read_bytes())
    assert pub.public_numbers() == key.public_key().public_numbers()
    with pytest.raises(FileExistsError):
        make_supernode_key(tmp_path, "sn0")
    if shutil.which("ssh-keygen"):
        out = subprocess.run(
            ["ssh-keygen", "-l", "-f", str(private)], capture_output=True, text=True, check=True
        ).stdout
        assert "384" in out and "ECDSA" in out


def test_cli_certs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(
        [
            "certs",
            "--out",
            str(tmp_path),
            "--server-name",
            "localhost",
            "--server-ip",
            "127.0.0.1",
            "--node-key",
            "sn0",
            "--node-key",
            "sn1",
        ]
    )
    assert rc == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "ca.crt",
        "ca.key",
        "server.key",
        "server.pem",
        "sn0",
        "sn0.pub",
        "sn1",
        "sn1.pub",
    ]
    assert "flwr supernode register" in capsys.readouterr().out
    assert main(["certs", "--out", str(tmp_path)]) == 2
    assert main(["certs", "--out", str(tmp_path), "--server-ip", "nope", "--force"]) == 1
