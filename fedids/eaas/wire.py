"""The HTTP body format of EaaS: an ordered list of numpy arrays as an uncompressed ``.npz``.

Why ``.npz``: it keeps dtype and shape exactly (the wire arrays are an ``int64`` header and
a ``uint8`` ciphertext blob), numpy reads it without pickle, and it needs no extra package.
Arrays are stored as ``a0, a1, ...`` so the order survives.
"""

from __future__ import annotations

import io
import zipfile

import numpy as np

CONTENT_TYPE = "application/x-npz"
ENCRYPT_PATH = "/v1/encrypt"
HEALTH_PATH = "/v1/health"
#: response header carrying the fingerprint of the public key the service encrypts with
FINGERPRINT_HEADER = "X-Fedids-Key-Fingerprint"
#: largest body either side accepts (a 2048-bit update of a 1M-parameter model is ~6 MB)
MAX_BODY_BYTES = 256 * 1024 * 1024


class WireError(ValueError):
    """A body that is not a well-formed list of arrays."""


def dumps(arrays: list[np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{f"a{i}": np.asarray(a) for i, a in enumerate(arrays)})
    return buf.getvalue()


def loads(data: bytes) -> list[np.ndarray]:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            names = list(npz.files)
            expected = [f"a{i}" for i in range(len(names))]
            if sorted(names) != sorted(expected):
                raise WireError(f"unexpected array names {names[:5]}")
            return [npz[name] for name in expected]
    except WireError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise WireError(f"not an array bundle: {exc}") from exc
