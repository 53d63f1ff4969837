"""Certificates for the SuperLink and keys for SuperNode authentication.

Why this module: a SuperNode verifies the SuperLink's certificate against a CA it trusts,
and gRPC checks that the name the node dials (DNS name or IP) is in the certificate's
subjectAltName. Getting SAN, key usages and file modes right by hand with openssl is
error-prone, so ``fedids certs`` does it with the ``cryptography`` package.

SuperNode authentication (``flower-superlink --enable-supernode-auth``) needs one NIST
elliptic-curve key pair per device in OpenSSH format (what ``ssh-keygen -t ecdsa -b 384``
makes); :func:`make_supernode_key` writes the same thing without needing ssh-keygen.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: file names written by :func:`write_certs`
CA_CERT = "ca.crt"
CA_KEY = "ca.key"
SERVER_CERT = "server.pem"
SERVER_KEY = "server.key"

_PRIVATE_MODE = 0o600


@dataclass(frozen=True)
class CertPaths:
    """Where :func:`write_certs` put each file."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fedids"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _now() -> dt.datetime:
    # a small back-dating tolerates clock skew between the machine that signs and the devices
    return dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)


def make_ca(
    common_name: str = "fedids CA", days: int = 3650
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """Create a self-signed CA (P-384) that may sign server certificates only."""
    key = ec.generate_private_key(ec.SECP384R1())
    name = _name(common_name)
    start = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA384())
    )
    return key, cert


def parse_ips(ips: list[str]) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Parse IP addresses, raising ``ValueError`` that names the bad one."""
    out = []
    for ip in ips:
        try:
            out.append(ipaddress.ip_address(ip.strip()))
        except ValueError as exc:
            raise ValueError(f"not an IP address: {ip!r}") from exc
    return out


def make_server_cert(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    names: list[str],
    ips: list[str],
    days: int = 825,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """Issue a TLS server certificate whose SAN lists every DNS name and IP a client may dial.

    gRPC and Python's ``ssl`` ignore the common name and check the SAN only, so at least
    one name or IP is required.
    """
    names = [n.strip() for n in names if n.strip()]
    ip_objs = parse_ips(ips)
    if not names and not ip_objs:
        raise ValueError("a server certificate needs at least one DNS name or IP address")
    key = ec.generate_private_key(ec.SECP256R1())
    start = _now()
    san: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    san += [x509.IPAddress(ip) for ip in ip_objs]
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0] if names else str(ip_objs[0])))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA384())
    )
    return key, cert


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` readable by the owner only (mode 0600 from creation on)."""
    path = Path(path)
    if path.exists():
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _PRIVATE_MODE)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, _PRIVATE_MODE)  # in case the umask or the filesystem widened it


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load_ca(out: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = serialization.load_pem_private_key((out / CA_KEY).read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{out / CA_KEY}: expected an EC private key")
    cert = x509.load_pem_x509_certificate((out / CA_CERT).read_bytes())
    return key, cert


#: names the SuperLink's own helper processes dial (see :func:`write_certs`)
LOOPBACK_NAMES = ["localhost"]
LOOPBACK_IPS = ["127.0.0.1", "::1"]


def _merge(first: list[str], extra: list[str]) -> list[str]:
    out: list[str] = []
    for item in [*first, *extra]:
        if item.strip() and item.strip() not in out:
            out.append(item.strip())
    return out


def write_certs(
    out_dir: str | Path,
    server_names: list[str],
    server_ips: list[str],
    *,
    days: int = 825,
    overwrite: bool = False,
    loopback: bool = True,
) -> CertPaths:
    """Write ``ca.crt``/``ca.key`` and ``server.pem``/``server.key`` into ``out_dir``.

    With ``loopback`` (the default) the SAN also lists ``localhost``, ``127.0.0.1`` and
    ``::1``: a SuperLink bound to ``0.0.0.0`` starts ``flwr-superexec``/``flwr-serverapp``
    which dial it on ``127.0.0.1`` *with TLS*; without that SAN entry they fail certificate
    verification and ``flwr run`` waits forever with no error on the CLI.

    An existing CA in ``out_dir`` is reused (so devices that already trust ``ca.crt`` keep
    working when the server certificate is renewed); an existing server certificate is only
    replaced with ``overwrite=True``. Private keys are written with mode 0600.
    """
    if loopback:
        server_names = _merge(server_names, LOOPBACK_NAMES)
        server_ips = _merge(server_ips, LOOPBACK_IPS)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = CertPaths(out / CA_CERT, out / CA_KEY, out / SERVER_CERT, out / SERVER_KEY)
    if paths.server_cert.exists() and not overwrite:
        raise FileExistsError(f"{paths.server_cert} exists (pass overwrite=True / --force)")
    if paths.ca_cert.exists() and paths.ca_key.exists():
        ca_key, ca_cert = _load_ca(out)
    else:
        ca_key, ca_cert = make_ca()
        write_private(paths.ca_key, _key_pem(ca_key))
        paths.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    key, cert = make_server_cert(ca_key, ca_cert, server_names, server_ips, days=days)
    write_private(paths.server_key, _key_pem(key))
    paths.server_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return paths


def san_entries(cert_path: str | Path) -> list[str]:
    """DNS names and IPs in a certificate's subjectAltName (for display and checks)."""
    cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.DNSName) + [
        str(ip) for ip in san.get_values_for_type(x509.IPAddress)
    ]


def make_supernode_key(
    out_dir: str | Path, name: str, *, overwrite: bool = False
) -> tuple[Path, Path]:
    """Write ``<name>`` (OpenSSH private key, 0600) and ``<name>.pub`` for one SuperNode.

    The curve is NIST P-384, as Flower requires a NIST EC key. Register the ``.pub`` file with
    ``flwr supernode register <name>.pub <connection>``; the private key never leaves the device.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    private, public = out / name, out / f"{name}.pub"
    if (private.exists() or public.exists()) and not overwrite:
        raise FileExistsError(f"{private} exists (pass overwrite=True / --force)")
    key = ec.generate_private_key(ec.SECP384R1())
    write_private(
        private,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        ),
    )
    pub = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    public.write_bytes(pub + f" fedids-{name}\n".encode())
    return private, public
