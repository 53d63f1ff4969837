"""Signed app bundles: Ed25519 publisher keys, FAB signatures, trusted-entities files.

Why: a SuperNode runs the code of the app bundle (FAB) the SuperLink hands it, not the
package installed on the device. Whoever can start a run on the SuperLink can therefore run
code on every device, unless the device only accepts bundles signed by a key it trusts:
``flower-supernode --trusted-entities FILE.yaml``.

What Flower 1.42 checks on the device (flwr/supernode/start_client_internal.py,
``_verify_fab``): the bundle's verification record must carry ``valid_license`` and, for at
least one key id listed in the YAML file, an Ed25519 signature over
``signed_at.to_bytes(8, "big") + sha256(fab)``, base64url without padding. The key file maps
``fpk_<id>`` to an OpenSSH ``ssh-ed25519`` public key (other key types are refused at start).

Where signatures come from: the SuperLink attaches verification records only to bundles it
fetches from an app registry (``flwr run @publisher/app==version``); bundles uploaded by
``flwr run <directory>`` never carry any, so a device with trusted entities refuses them.
:mod:`fedids.deploy.registry` is that registry, on the SuperLink host.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import time
import tomllib
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from fedids.deploy.certs import write_private

#: Flower's documented prefix for public key ids ("Flower Public Key")
KEY_ID_PREFIX = "fpk_"


class SigningError(ValueError):
    """A key or bundle that cannot be used; the message names the file."""


def generate_signing_key(
    out_dir: str | Path, name: str, *, overwrite: bool = False
) -> tuple[Path, Path]:
    """Write ``<name>`` (OpenSSH Ed25519 private key, 0600) and ``<name>.pub``.

    The same files as ``ssh-keygen -t ed25519 -N "" -f <name>``; the private key stays with
    whoever releases the app (it never goes to the SuperLink or the devices).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    private, public = out / name, out / f"{name}.pub"
    if (private.exists() or public.exists()) and not overwrite:
        raise FileExistsError(f"{private} exists (pass overwrite=True / --force)")
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    write_private(private, pem)
    public.write_text(public_key_line(key.public_key(), f"fedids-{name}") + "\n")
    return private, public


def load_private_key(path: str | Path) -> ed25519.Ed25519PrivateKey:
    """An Ed25519 private key from an OpenSSH or PEM file (no passphrase)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SigningError(f"{path}: cannot read the signing key ({exc.strerror})") from None
    key = None
    for loader in (serialization.load_ssh_private_key, serialization.load_pem_private_key):
        try:
            key = loader(data, password=None)
            break
        except (ValueError, TypeError):
            continue
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise SigningError(f"{path}: not an unencrypted Ed25519 private key")
    return key


def load_public_key(source: str | Path) -> ed25519.Ed25519PublicKey:
    """An Ed25519 public key from a ``.pub`` file or an ``ssh-ed25519 AAAA...`` line."""
    text = str(source)
    if not text.startswith("ssh-"):
        try:
            text = Path(source).read_text().strip()
        except OSError as exc:
            raise SigningError(f"{source}: cannot read the public key ({exc.strerror})") from None
    try:
        key = serialization.load_ssh_public_key(text.encode())
    except (ValueError, TypeError, IndexError):
        key = None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise SigningError(f"{source}: not an OpenSSH ssh-ed25519 public key")
    return key


def _raw(public_key: ed25519.Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public_key: ed25519.Ed25519PublicKey) -> str:
    """``fpk_<uuid>`` derived from the key itself, so nobody has to invent or track ids."""
    return KEY_ID_PREFIX + str(uuid.UUID(bytes=hashlib.sha256(_raw(public_key)).digest()[:16]))


def public_key_line(public_key: ed25519.Ed25519PublicKey, comment: str = "") -> str:
    """``ssh-ed25519 AAAA... comment`` (the form Flower's trusted-entities file wants)."""
    line = public_key.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()
    return f"{line} {comment}".strip()


@dataclass(frozen=True)
class Signature:
    """One signer's verification record for one bundle, as Flower's SuperLink relays it."""

    public_key_id: str
    signature: str  # base64url, no padding
    signed_at: int  # seconds since the epoch; part of the signed message

    def to_dict(self) -> dict[str, str | int]:
        return {
            "public_key_id": self.public_key_id,
            "signature": self.signature,
            "signed_at": self.signed_at,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Signature:
        return cls(str(data["public_key_id"]), str(data["signature"]), int(data["signed_at"]))


def message_to_sign(fab: bytes, signed_at: int) -> bytes:
    """Flower's canonical message: 8-byte big-endian timestamp, then sha256 of the bundle."""
    return signed_at.to_bytes(8, "big") + hashlib.sha256(fab).digest()


def sign_fab(
    fab: bytes,
    private_key: ed25519.Ed25519PrivateKey,
    *,
    signed_at: int | None = None,
    claim_key_id: str | None = None,
) -> Signature:
    """Sign ``fab``. ``claim_key_id`` (tests only) lets a forger claim someone else's id."""
    signed_at = int(time.time()) if signed_at is None else int(signed_at)
    raw = private_key.sign(message_to_sign(fab, signed_at))
    sig = base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
    return Signature(claim_key_id or key_id(private_key.public_key()), sig, signed_at)


def verify_fab(fab: bytes, signature: Signature, public_key: ed25519.Ed25519PublicKey) -> bool:
    """The device's check, for ``fedids bundle verify`` (Flower's own code does it on devices)."""
    try:
        raw = base64.urlsafe_b64decode(signature.signature + "=" * (-len(signature.signature) % 4))
        public_key.verify(raw, message_to_sign(fab, signature.signed_at))
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def write_trusted_entities(path: str | Path, public_keys: list[str | Path]) -> Path:
    """Write the YAML file for ``flower-supernode --trusted-entities``: ``fpk_<id>: ssh-ed25519``.

    Each entry comes from a ``.pub`` file or an ``ssh-ed25519`` line; ids are derived from
    the keys (:func:`key_id`), so they match what :func:`sign_fab` puts in signatures.
    """
    if not public_keys:
        raise SigningError("give at least one publisher public key to trust")
    entries: dict[str, str] = {}
    for source in public_keys:
        key = load_public_key(source)
        entries[key_id(key)] = public_key_line(key)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(entries, sort_keys=True, width=1000))
    return path


def build_fab(app_dir: str | Path) -> bytes:
    """The bundle ``flwr build`` / ``flwr run <dir>`` would make from ``app_dir``."""
    from flwr.cli.build import build_fab_from_disk

    return build_fab_from_disk(Path(app_dir))


@dataclass(frozen=True)
class FabInfo:
    """What a bundle says about itself (its ``pyproject.toml``)."""

    publisher: str
    name: str
    version: str
    sha256: str

    @property
    def app_id(self) -> str:
        return f"@{self.publisher}/{self.name}"

    @property
    def spec(self) -> str:
        """What to give ``flwr run`` for the SuperLink to fetch this exact version."""
        return f"{self.app_id}=={self.version}"


def fab_info(fab: bytes, origin: str = "bundle") -> FabInfo:
    """Read publisher, name and version from a bundle's ``pyproject.toml``."""
    try:
        with zipfile.ZipFile(io.BytesIO(fab)) as zf:
            config = tomllib.loads(zf.read("pyproject.toml").decode())
        return FabInfo(
            publisher=str(config["tool"]["flwr"]["app"]["publisher"]),
            name=str(config["project"]["name"]),
            version=str(config["project"]["version"]),
            sha256=hashlib.sha256(fab).hexdigest(),
        )
    except (zipfile.BadZipFile, KeyError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SigningError(f"{origin}: not a Flower app bundle ({exc})") from None
