"""The EaaS HTTP service: ``POST /v2/encrypt`` turns plaintext weights into wire arrays.

Why it is built like this:

* stdlib ``ThreadingHTTPServer`` -- one small, auditable endpoint needs no web framework;
* bearer token compared with :func:`hmac.compare_digest` (constant time) and never logged:
  the access log records method, path, status and the client address only;
* it holds only the public key, so compromising it reveals plaintext updates sent to it
  (that device's own data, by design) but nothing the aggregator has;
* encryption runs under a lock: :class:`~fedids.crypto.update.UpdateEncryptor` uses a
  process pool of its own, and serialising requests keeps CPU use bounded and predictable;
* TLS through :mod:`ssl`, with the handshake done in the request thread so that a slow or
  hostile client cannot stall ``accept()``.

Endpoints: ``POST /v2/encrypt`` (auth; a :class:`~fedids.eaas.wire.EncryptRequest`: model
weights with the device's share, binding and binding tag, or a count vector) and ``GET
/v1/health`` (no auth; key fingerprint and size, for readiness probes). Bodies are
:mod:`fedids.eaas.wire` bundles.
"""

from __future__ import annotations

import hmac
import json
import logging
import ssl
import threading
from collections.abc import Callable
from dataclasses import replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from fedids.eaas import wire

log = logging.getLogger("fedids.eaas")

EncryptV2 = Callable[[wire.EncryptRequest], list[np.ndarray]]


class EaaSServer(ThreadingHTTPServer):
    """HTTP(S) server holding the encrypt function, the token and the key's fingerprint."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        *,
        encrypt_v2: EncryptV2,
        token: str,
        fingerprint: str,
        key_bits: int,
        ssl_context: ssl.SSLContext | None = None,
        max_body: int = wire.MAX_BODY_BYTES,
        max_values: int = 50_000_000,
    ) -> None:
        if not token:
            raise ValueError("EaaS needs a non-empty bearer token")
        super().__init__(address, _Handler)
        self.encrypt_v2 = encrypt_v2
        self._token = token.encode()
        self.fingerprint = fingerprint
        self.key_bits = key_bits
        self.max_body = max_body
        self.max_values = max_values
        self.lock = threading.Lock()
        self.requests_served = 0
        self.tls = ssl_context is not None
        if ssl_context is not None:
            self.socket = ssl_context.wrap_socket(
                self.socket, server_side=True, do_handshake_on_connect=False
            )

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A broken connection or failed TLS handshake is the client's problem: one log line."""
        log.info(
            "connection from %s ended with an error",
            client_address[0],
            exc_info=log.isEnabledFor(logging.DEBUG),
        )

    def token_ok(self, header: str | None) -> bool:
        """Constant-time check of an ``Authorization: Bearer <token>`` header."""
        if not header or not header.startswith("Bearer "):
            # still spend a comparison so a missing header is not measurably faster
            hmac.compare_digest(self._token, b"")
            return False
        return hmac.compare_digest(self._token, header[len("Bearer ") :].strip().encode())

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"{'https' if self.tls else 'http'}://{host}:{port}"

    def serve_in_thread(self) -> threading.Thread:
        """Serve from a daemon thread (tests, embedding); stop with :meth:`shutdown`."""
        t = threading.Thread(target=self.serve_forever, name="fedids-eaas", daemon=True)
        t.start()
        return t


class _Handler(BaseHTTPRequestHandler):
    server: EaaSServer
    protocol_version = "HTTP/1.1"
    server_version = "fedids-eaas/1"
    timeout = 60  # seconds a client may take to send a request (also bounds the TLS handshake)

    def setup(self) -> None:
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            try:
                self.connection.do_handshake()
            except (ssl.SSLError, OSError) as exc:
                log.info("TLS handshake with %s failed: %s", self.client_address[0], exc)
                self.close_connection = True
                raise

    # never log headers (the token) or bodies (plaintext weights)
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.info("%s %s", self.client_address[0], format % args)

    def _reply(self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        body = json.dumps({"error": message}).encode()
        self.close_connection = True
        self._reply(status, body, "application/json", headers)

    def _drain(self) -> None:
        """Read and discard a request body of acceptable size."""
        try:
            left = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            return
        if left > self.server.max_body:
            return
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 16))
            if not chunk:
                return
            left -= len(chunk)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        if self.path != wire.HEALTH_PATH:
            self._error(HTTPStatus.NOT_FOUND, f"no such endpoint {self.path}")
            return
        body = json.dumps(
            {
                "status": "ok",
                "fingerprint": self.server.fingerprint,
                "key_bits": self.server.key_bits,
            }
        ).encode()
        self._reply(HTTPStatus.OK, body, "application/json")

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        if self.path != wire.ENCRYPT_V2_PATH:
            self._error(HTTPStatus.NOT_FOUND, f"no such endpoint {self.path}")
            return
        if not self.server.token_ok(self.headers.get("Authorization")):
            self._drain()  # so the client reads our 401 instead of a reset connection
            self._error(
                HTTPStatus.UNAUTHORIZED,
                "missing or wrong bearer token",
                {"WWW-Authenticate": 'Bearer realm="fedids-eaas"'},
            )
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._error(HTTPStatus.LENGTH_REQUIRED, "Content-Length required")
            return
        if length < 0 or length > self.server.max_body:
            self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over {self.server.max_body} B")
            return
        body = self.rfile.read(length)
        try:
            request = _validate_v2(wire.loads_request(body), self.server.max_values)
        except (wire.WireError, ValueError) as exc:
            self._error(HTTPStatus.BAD_REQUEST, str(exc))
            return
        try:
            with self.server.lock:
                arrays = self.server.encrypt_v2(request)
                self.server.requests_served += 1
        except ValueError as exc:  # the encryptor refused the request (share, counts range)
            self._error(HTTPStatus.BAD_REQUEST, str(exc))
            return
        except Exception:  # answer 500, keep serving; the log has the traceback, not the data
            log.exception("encryption failed")
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, "encryption failed")
            return
        self._reply(
            HTTPStatus.OK,
            wire.dumps(arrays),
            wire.CONTENT_TYPE,
            {wire.FINGERPRINT_HEADER: self.server.fingerprint},
        )


def _validate(arrays: list[np.ndarray], max_values: int) -> list[np.ndarray]:
    """Plain weights only: non-empty, real floating point, finite, bounded in size."""
    if not arrays:
        raise ValueError("no arrays in the request")
    total = 0
    out = []
    for i, a in enumerate(arrays):
        if a.dtype.kind != "f":
            raise ValueError(f"array {i} has dtype {a.dtype}; plain float weights expected")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"array {i} contains NaN or infinity")
        total += a.size
        out.append(a.astype(np.float32, copy=False))
    if total > max_values:
        raise ValueError(f"{total} values is over the limit of {max_values}")
    return out


def _validate_v2(request: wire.EncryptRequest, max_values: int) -> wire.EncryptRequest:
    """Model: plain float weights (:func:`_validate`); counts: one 1-D integer array."""
    if request.op == wire.OP_MODEL:
        return replace(request, arrays=_validate(request.arrays, max_values))
    if len(request.arrays) != 1:
        raise ValueError("a counts request holds exactly one array")
    (counts,) = request.arrays
    if counts.dtype.kind not in "iu" or counts.ndim != 1:
        raise ValueError(f"counts must be a 1-D integer array, got {counts.dtype} {counts.shape}")
    if counts.size > max_values:
        raise ValueError(f"{counts.size} counts is over the limit of {max_values}")
    return request


def server_ssl_context(certfile: str | Path, keyfile: str | Path) -> ssl.SSLContext:
    """TLS 1.2+ server context from a certificate chain and key (e.g. from ``fedids certs``)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(certfile), str(keyfile))
    return ctx


def read_token(path: str | Path) -> str:
    """The bearer token from a file (surrounding whitespace stripped); refuse an empty one."""
    token = Path(path).read_text().strip()
    if not token:
        raise ValueError(f"token file {path} is empty")
    return token


def build_server(
    key_dir: str | Path,
    mode: dict[str, Any],
    token: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8443,
    certfile: str | Path | None = None,
    keyfile: str | Path | None = None,
) -> EaaSServer:
    """An EaaS server for the public key in ``key_dir`` and the codec of the ``mode`` config.

    ``mode`` is the composed ``cfg.mode`` group (``conf/mode/paillier.yaml``): the service must
    use the same codec parameters as the federation, or the aggregate cannot be decoded.
    """
    from fedids.crypto.codec import CodecParams
    from fedids.crypto.keys import fingerprint, load_public_key
    from fedids.crypto.update import UpdateEncryptor

    key_dir = Path(key_dir)
    if (key_dir / "private.json").exists():
        log.warning(
            "%s also holds a private key: the service needs only the public key; "
            "keep the private key off this host",
            key_dir,
        )
    public_key = load_public_key(key_dir)
    params = CodecParams.from_config(mode)
    workers = int(mode.get("workers", 1))
    encryptor = UpdateEncryptor(public_key, params, workers=workers)
    precompute = bool(mode.get("precompute", True)) and workers > 1

    def encrypt_v2(request: wire.EncryptRequest) -> list[np.ndarray]:
        if request.op == wire.OP_MODEL:
            arrays = encryptor.encrypt_model(
                request.arrays,
                share=request.share,
                binding=request.binding,
                tag=request.binding_tag,
            )
        else:
            arrays = encryptor.encrypt_counts(
                request.arrays[0], binding=request.binding, tag=request.binding_tag
            )
        if precompute:  # obfuscators for the next payload of this size, in the background
            encryptor.start_precompute(len(arrays[1]))
        return arrays

    ctx = None
    if certfile or keyfile:
        if not (certfile and keyfile):
            raise ValueError("TLS needs both a certificate and a key file")
        ctx = server_ssl_context(certfile, keyfile)
    return EaaSServer(
        (host, port),
        encrypt_v2=encrypt_v2,
        token=token,
        fingerprint=fingerprint(public_key),
        key_bits=params.key_bits,
        ssl_context=ctx,
    )
