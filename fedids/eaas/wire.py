"""The HTTP body format of EaaS: an ordered list of numpy arrays as an uncompressed ``.npz``.

Why ``.npz``: it keeps dtype and shape exactly (the wire arrays are an ``int64`` header and
a ``uint8`` ciphertext blob), numpy reads it without pickle, and it needs no extra package.
Arrays are stored as ``a0, a1, ...`` so the order survives. A protocol v2 request
(:class:`EncryptRequest`) puts an ``int64`` request header first: the operation, the device's
share, its binding and binding tag.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass

import numpy as np

from fedids.crypto.binding import Binding

CONTENT_TYPE = "application/x-npz"
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


# -- protocol v2 requests: the device's share, binding and binding tag travel with the values --
ENCRYPT_V2_PATH = "/v2/encrypt"
OP_MODEL = 1
OP_COUNTS = 2
_REQUEST_FIELDS = (
    "version",
    "op",
    "share_bits",
    "run_id",
    "round",
    "base_version",
    "kind",
    "tag",
    "binding_tag",
)


@dataclass(frozen=True)
class EncryptRequest:
    """What a v2 device asks the service to encrypt (see ``UpdateEncryptor``).

    ``binding_tag`` is computed by the device from its private key (the service holds only
    the public key); ``share`` is ``n_k/N`` for a model and ignored for counts.
    """

    op: int
    arrays: list[np.ndarray]
    binding: Binding
    binding_tag: int
    share: float = 1.0


def dumps_request(req: EncryptRequest) -> bytes:
    head = np.array(
        [
            2,
            req.op,
            int(np.array([req.share], dtype=np.float64).view(np.int64)[0]),
            *req.binding.fields(),
            req.binding_tag,
        ],
        dtype=np.int64,
    )
    return dumps([head, *req.arrays])


def loads_request(data: bytes) -> EncryptRequest:
    """Parse a v2 request body; :class:`WireError` (one line) for anything malformed."""
    arrays = loads(data)
    if len(arrays) < 2:
        raise WireError("a v2 request holds a request header and at least one array")
    head = arrays[0]
    if head.dtype != np.int64 or head.shape != (len(_REQUEST_FIELDS),) or int(head[0]) != 2:
        raise WireError(f"request header must be int64[{len(_REQUEST_FIELDS)}] of version 2")
    f = dict(zip(_REQUEST_FIELDS, (int(v) for v in head.tolist()), strict=True))
    if f["op"] not in (OP_MODEL, OP_COUNTS):
        raise WireError(f"unknown operation {f['op']}")
    try:
        binding = Binding(f["run_id"], f["round"], f["base_version"], f["kind"], f["tag"])
    except ValueError as exc:
        raise WireError(str(exc)) from None
    share = float(np.array([f["share_bits"]], dtype=np.int64).view(np.float64)[0])
    return EncryptRequest(f["op"], arrays[1:], binding, f["binding_tag"], share)
