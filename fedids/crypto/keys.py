"""Paillier key pairs: generation, versioned JSON files, fingerprints.

Files in a key directory::

    public.json   {"format": "fedids-paillier-public/1", "bits", "n", "fingerprint"}
    private.json  {"format": "fedids-paillier-private/1", "bits", "n", "p", "q", "fingerprint"}

Integers are lower-case hex strings. ``private.json`` is created with mode 0600 from the
first byte (``os.open(..., 0o600)`` on a temporary file, then an atomic rename or link),
never chmod-ed afterwards, so there is no window in which another user could read it; and a
``private.json`` that group or others can read is refused on load (copied with a loose umask,
say): its key may already be exposed, and silently using it would hide that. No error raised
here ever carries key material: messages name the file and the field, never a value.
The fingerprint is the SHA-256 (hex) of ``n`` as big-endian bytes of minimal length; it
is what logs and the CLI show. Key material itself is never logged or printed.

The key objects are python-paillier's (``phe``) ``PaillierPublicKey``/``PaillierPrivateKey``:
their decryption already uses the CRT, and the per-value benchmark uses them directly.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gmpy2
from phe import paillier

from fedids.crypto.codec import MIN_KEY_BITS

PublicKey = paillier.PaillierPublicKey
PrivateKey = paillier.PaillierPrivateKey

PUBLIC_FORMAT = "fedids-paillier-public/1"
PRIVATE_FORMAT = "fedids-paillier-private/1"
PUBLIC_FILE = "public.json"
PRIVATE_FILE = "private.json"
LOCK_FILE = ".keys.lock"


class KeyFileError(ValueError):
    """A key file that is missing, malformed or inconsistent."""


def n_bytes(n: int) -> bytes:
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


def fingerprint_of_n(n: int) -> str:
    """SHA-256 hex of ``n``'s minimal big-endian bytes."""
    return hashlib.sha256(n_bytes(int(n))).hexdigest()


def fingerprint(public_key: PublicKey) -> str:
    return fingerprint_of_n(public_key.n)


def key_id(fingerprint_hex: str) -> int:
    """First 8 bytes of a fingerprint as a signed int64: tags wire headers with their key."""
    return int.from_bytes(bytes.fromhex(fingerprint_hex)[:8], "big", signed=True)


def public_key_from_n(n: int) -> PublicKey:
    return paillier.PaillierPublicKey(int(n))


def _prime_3_mod_4(bits: int) -> int:
    """A random ``bits``-bit prime ``p = 3 (mod 4)`` whose two top bits are set (so that the
    product of two has exactly ``2*bits`` bits)."""
    while True:
        candidate = int(gmpy2.next_prime(secrets.randbits(bits) | (3 << (bits - 2))))
        if candidate % 4 == 3 and candidate.bit_length() == bits and gmpy2.is_prime(candidate, 50):
            return candidate


def is_admissible(p: int, q: int) -> bool:
    """``p = q = 3 (mod 4)`` and ``gcd(p-1, q-1) = 2``: the moduli for which the short-exponent
    obfuscators' security argument is made (docs/paillier.md, "Obfuscators")."""
    return p % 4 == 3 and q % 4 == 3 and p != q and math.gcd(p - 1, q - 1) == 2


def generate_keypair(bits: int = 2048) -> tuple[PublicKey, PrivateKey]:
    """A fresh key pair with an admissible ``n`` of exactly ``bits`` bits.

    ``p = q = 3 (mod 4)``, ``gcd(p-1, q-1) = 2`` and ``|p - q| >= 2**(bits/2 - 2)`` (against
    square-root attacks on close primes), as SecretFlow HEU generates keys for the same
    fixed-base encryption; primes from OS randomness, Miller-Rabin with 50 rounds.
    """
    if bits < MIN_KEY_BITS or bits % 2:
        raise ValueError(f"key size {bits} is not supported (even, >= {MIN_KEY_BITS})")
    half = bits // 2
    while True:
        p, q = _prime_3_mod_4(half), _prime_3_mod_4(half)
        if is_admissible(p, q) and abs(p - q).bit_length() >= half - 2:
            break
    public = paillier.PaillierPublicKey(p * q)
    if public.n.bit_length() != bits:  # pragma: no cover - the top bits guarantee it
        raise RuntimeError("generated modulus has the wrong size")
    return public, paillier.PaillierPrivateKey(public, p, q)


# -- files --------------------------------------------------------------------------------------
def _public_doc(public: PublicKey) -> dict[str, Any]:
    return {
        "format": PUBLIC_FORMAT,
        "bits": public.n.bit_length(),
        "n": format(public.n, "x"),
        "fingerprint": fingerprint(public),
    }


def _private_doc(private: PrivateKey) -> dict[str, Any]:
    n = private.public_key.n
    return {
        "format": PRIVATE_FORMAT,
        "bits": n.bit_length(),
        "n": format(n, "x"),
        "p": format(private.p, "x"),
        "q": format(private.q, "x"),
        "fingerprint": fingerprint_of_n(n),
    }


def _write_new_file(path: Path, data: bytes, mode: int, overwrite: bool) -> None:
    """Write ``path`` atomically with ``mode`` set at creation (no chmod window).

    The content goes to a temporary file in the same directory (created ``O_EXCL`` with
    ``mode``), fsynced, then either renamed over ``path`` (``overwrite``) or hard-linked
    to it, which fails if ``path`` exists, so an existing key is never replaced by accident.
    """
    tmp_name = str(path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if overwrite:
            os.replace(tmp_name, path)
        else:
            try:
                os.link(tmp_name, path)
            except FileExistsError:
                raise FileExistsError(f"{path} already exists; not overwriting a key") from None
            finally:
                os.unlink(tmp_name)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def save_keypair(
    directory: str | os.PathLike[str],
    public: PublicKey,
    private: PrivateKey,
    *,
    overwrite: bool = False,
) -> Path:
    """Write ``public.json`` (0644) and ``private.json`` (0600) into ``directory``."""
    if private.public_key.n != public.n:
        raise ValueError("private key does not belong to this public key")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not overwrite:
        existing = [f for f in (PUBLIC_FILE, PRIVATE_FILE) if (directory / f).exists()]
        if existing:
            raise FileExistsError(
                f"{directory} already holds {', '.join(existing)}; not overwriting keys"
            )
    # private first: a public.json without its private.json is never left behind
    _write_new_file(
        directory / PRIVATE_FILE,
        (json.dumps(_private_doc(private), indent=2) + "\n").encode(),
        0o600,
        overwrite,
    )
    _write_new_file(
        directory / PUBLIC_FILE,
        (json.dumps(_public_doc(public), indent=2) + "\n").encode(),
        0o644,
        overwrite,
    )
    return directory


def _parse(fn: Any, *args: Any) -> Any:
    """``fn(*args)``, or ``None`` if it raises: callers raise their own error OUTSIDE any
    ``except`` block, so that no exception holding file content (``JSONDecodeError.doc``,
    ``UnicodeDecodeError.object``, ``int()``'s message) is even kept as ``__context__``."""
    try:
        return fn(*args)
    except (KeyError, TypeError, ValueError, UnicodeDecodeError):
        return None


def _hex(doc: dict[str, Any], name: str) -> int | None:
    value = doc.get(name)
    return _parse(int, value, 16) if isinstance(value, str) else None


def _read_doc(path: Path, expected_format: str) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"no key file {path}") from None
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from None
    doc = _parse(json.loads, raw)
    del raw
    if doc is None:
        raise KeyFileError(f"cannot read key file {path}: not JSON")
    if not isinstance(doc, dict) or doc.get("format") != expected_format:
        raise KeyFileError(f"{path} is not a {expected_format} file")
    n, bits = _hex(doc, "n"), doc.get("bits")
    if n is None or not isinstance(bits, int):
        raise KeyFileError(f"{path}: missing or malformed 'n'/'bits'")
    if n.bit_length() != bits:
        raise KeyFileError(f"{path}: n has {n.bit_length()} bits, file says {bits}")
    if doc.get("fingerprint") != fingerprint_of_n(n):
        raise KeyFileError(f"{path}: fingerprint does not match n")
    return doc


def _key_path(path: str | os.PathLike[str], name: str) -> Path:
    p = Path(path)
    return p / name if p.is_dir() else p


def load_public_key(path: str | os.PathLike[str]) -> PublicKey:
    """Load ``public.json`` from a key directory (or the file itself)."""
    doc = _read_doc(_key_path(path, PUBLIC_FILE), PUBLIC_FORMAT)
    return public_key_from_n(int(doc["n"], 16))


def load_private_key(path: str | os.PathLike[str]) -> PrivateKey:
    """Load ``private.json`` from a key directory (or the file itself); checks p*q == n."""
    file = _key_path(path, PRIVATE_FILE)
    check_private_file_mode(file)
    doc = _read_doc(file, PRIVATE_FORMAT)
    n, p, q = (_hex(doc, k) for k in ("n", "p", "q"))
    if p is None or q is None or n is None:
        raise KeyFileError(f"{file}: missing or malformed 'p'/'q'")
    if p * q != n or p == q or p < 2 or q < 2:
        raise KeyFileError(f"{file}: p*q does not equal n")
    key = _parse(paillier.PaillierPrivateKey, public_key_from_n(n), p, q)
    if key is None:  # phe's messages are not ours to vouch for
        raise KeyFileError(f"{file}: not a valid Paillier private key")
    return key


def check_private_file_mode(file: Path) -> None:
    """Refuse a private key file that group or others may read (or that is not a file)."""
    try:
        st = file.stat()
    except FileNotFoundError:
        raise FileNotFoundError(f"no private key file {file}") from None
    if not stat.S_ISREG(st.st_mode):
        raise KeyFileError(f"{file} is not a regular file")
    if st.st_mode & 0o077:
        raise KeyFileError(
            f"{file} is readable by group or others (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"refusing to use a private key others may have read: fix with `chmod 600 {file}` "
            "(and make a new key if others did read it)"
        )


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """An exclusive ``fcntl`` lock on ``directory/.keys.lock`` (released on close/exit)."""
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def ensure_keypair(
    directory: str | os.PathLike[str], bits: int = 2048
) -> tuple[PublicKey, PrivateKey]:
    """Load the key pair in ``directory``, creating it first if there is none.

    Several processes (simulated devices) may call this at once: creation happens under
    an exclusive file lock, so exactly one generates and all load the same pair.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _locked(directory):
        has_private = (directory / PRIVATE_FILE).exists()
        has_public = (directory / PUBLIC_FILE).exists()
        if not has_private and not has_public:
            public, private = generate_keypair(bits)
            save_keypair(directory, public, private)
            return public, private
        if not has_private:
            raise KeyFileError(
                f"{directory} holds {PUBLIC_FILE} but no {PRIVATE_FILE}: a device needs both"
            )
        private = load_private_key(directory)
        if not has_public:  # interrupted after the private file: derive the public one
            _write_new_file(
                directory / PUBLIC_FILE,
                (json.dumps(_public_doc(private.public_key), indent=2) + "\n").encode(),
                0o644,
                False,
            )
        public = load_public_key(directory)
        if public.n != private.public_key.n:
            raise KeyFileError(f"{directory}: public.json and private.json do not match")
        if public.n.bit_length() != bits:
            raise KeyFileError(
                f"{directory} holds a {public.n.bit_length()}-bit key, {bits} bits were asked for"
            )
        return public, private
