"""The device side of EaaS: send plain weights, get back the wire arrays the strategy expects.

Why a separate, dependency-free client: it runs inside ``flwr-clientapp`` on small devices,
so it uses only :mod:`urllib` and :mod:`ssl`, and turns every failure into one
:class:`EaaSError` whose message says what to fix (token, address, certificate, service).

Fallback policy (:func:`encrypt_v2`): when a local fallback is supplied, the device
encrypts locally if the service is unreachable, slow, failing or answers nonsense. A
rejected token (401/403) is never papered over: that is a configuration error and raises.
"""

from __future__ import annotations

import http.client
import logging
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fedids.eaas import wire

log = logging.getLogger("fedids.eaas")

ErrorKind = Literal["auth", "unavailable", "rejected", "bad_response"]


class EaaSError(RuntimeError):
    """An EaaS call failed. ``kind``: auth | unavailable | rejected | bad_response."""

    def __init__(self, kind: ErrorKind, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status


def endpoint(url: str, path: str = wire.ENCRYPT_V2_PATH) -> str:
    """``https://host:port`` or ``.../v2/encrypt`` -> the full URL of ``path``."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise EaaSError("rejected", f"EaaS URL must be http(s)://host:port, got {url!r}")
    path = parsed.path.rstrip("/").removesuffix(wire.ENCRYPT_V2_PATH) + path
    return urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, path, "", ""))


def _ssl_context(url: str, ca_file: str | Path | None) -> ssl.SSLContext | None:
    if not url.startswith("https:"):
        return None
    try:
        return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise EaaSError("rejected", f"cannot load EaaS CA file {ca_file}: {exc}") from exc


def _is_encrypted(arrays: list[np.ndarray]) -> bool:
    try:
        from fedids.crypto.update import is_encrypted_payload
    except ImportError:  # pragma: no cover - crypto is always shipped with fedids
        return len(arrays) == 2 and arrays[0].dtype == np.int64 and arrays[1].dtype == np.uint8
    return bool(is_encrypted_payload(arrays))


def check_token(token: str) -> str:
    """The token, if it can be a bearer token: one line of visible ASCII, at most 4096 chars.

    Anything else is refused WITHOUT quoting it (kind ``auth``: a credential problem, never
    papered over by the local fallback): a token file that is really a key file or a
    certificate would otherwise end up in an exception message (http.client quotes header
    values it refuses), and from there in Flower's logs.
    """
    token = token.strip()
    if not (1 <= len(token) <= 4096) or not all(33 <= ord(ch) <= 126 for ch in token):
        raise EaaSError(
            "auth",
            "the EaaS token file does not hold a bearer token (one line of visible ASCII "
            "characters, no spaces); is mode.eaas_token_file the right file?",
        )
    return token


def _post(
    target: str, body: bytes, token: str, timeout: float, ca_file: str | Path | None
) -> tuple[int, str | None, bytes]:
    """POST ``body``; (status, key fingerprint header, response body) or :class:`EaaSError`."""
    request = urllib.request.Request(
        target,
        data=body,
        method="POST",
        headers={
            "Authorization": f"Bearer {check_token(token)}",
            "Content-Type": wire.CONTENT_TYPE,
            "Accept": wire.CONTENT_TYPE,
        },
    )
    ctx = _ssl_context(target, ca_file)
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=ctx) as resp:
            status = resp.status
            fp = resp.headers.get(wire.FINGERPRINT_HEADER)
            length = int(resp.headers.get("Content-Length") or 0)
            if length > wire.MAX_BODY_BYTES:
                raise EaaSError("bad_response", f"EaaS {target} answered {length} bytes", status)
            return status, fp, resp.read()
    except urllib.error.HTTPError as exc:
        detail = _error_detail(exc)
        if exc.code in (401, 403):
            raise EaaSError(
                "auth",
                f"EaaS {target} refused the bearer token (HTTP {exc.code}): check "
                f"mode.eaas_token_file matches the service's token file{detail}",
                exc.code,
            ) from None
        kind: ErrorKind = "unavailable" if exc.code >= 500 else "rejected"
        raise EaaSError(kind, f"EaaS {target} answered HTTP {exc.code}{detail}", exc.code) from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, ssl.SSLCertVerificationError):
            msg = f"TLS certificate of {target} not trusted ({reason.verify_message}); set the CA"
        else:
            msg = f"EaaS {target} unreachable: {reason}"
        raise EaaSError("unavailable", msg) from None
    except TimeoutError as exc:
        raise EaaSError("unavailable", f"EaaS {target} did not answer within {timeout}s") from exc
    except (ConnectionError, http.client.HTTPException, OSError) as exc:
        raise EaaSError("unavailable", f"EaaS {target} connection failed: {exc!r}") from exc


def _answer(
    target: str, status: int, fp: str | None, data: bytes, expected_fingerprint: str | None
) -> list[np.ndarray]:
    try:
        arrays = wire.loads(data)
    except wire.WireError as exc:
        raise EaaSError(
            "bad_response", f"EaaS {target} sent a malformed body: {exc}", status
        ) from None
    if not _is_encrypted(arrays):
        raise EaaSError(
            "bad_response", f"EaaS {target} did not return an encrypted payload", status
        )
    if expected_fingerprint and not _same_key(arrays, fp, expected_fingerprint):
        raise EaaSError(
            "bad_response",
            f"EaaS {target} encrypts with key {fp}, this device uses {expected_fingerprint}: "
            "give the service the federation's public key",
            status,
        )
    return arrays


def remote_encrypt_v2(
    url: str,
    token: str,
    request: wire.EncryptRequest,
    timeout: float,
    ca_file: str | Path | None = None,
    *,
    expected_fingerprint: str | None = None,
) -> list[np.ndarray]:
    """POST ``request`` to the EaaS at ``url``, which encrypts it (model with share, or counts)
    exactly as ``UpdateEncryptor.encrypt_model``/``encrypt_counts`` would; return the wire arrays.

    Raises :class:`EaaSError` naming the cause: wrong token (``auth``), service down or
    timing out or a TLS failure (``unavailable``), a request the service refused
    (``rejected``), or a response that is not an encrypted payload of ``request``'s binding,
    or one made with a different public key than ``expected_fingerprint`` (``bad_response``).
    The token is sent only in the ``Authorization`` header and appears in no message.
    """
    target = endpoint(url, wire.ENCRYPT_V2_PATH)
    if request.op == wire.OP_MODEL:
        request = replace(request, arrays=[np.asarray(w, np.float32) for w in request.arrays])
    status, fp, data = _post(target, wire.dumps_request(request), token, timeout, ca_file)
    arrays = _answer(target, status, fp, data, expected_fingerprint)
    try:
        from fedids.crypto.wire import WireHeader

        binding = WireHeader.from_array(np.asarray(arrays[0])).binding
    except ValueError:
        raise EaaSError(
            "bad_response", f"EaaS {target} answered another protocol", status
        ) from None
    if binding != request.binding:
        raise EaaSError("bad_response", f"EaaS {target} answered for another binding", status)
    return arrays


def _same_key(arrays: list[np.ndarray], header_fp: str | None, expected: str) -> bool:
    """Both the response header and the key id inside the payload name the expected key."""
    from fedids.crypto.keys import key_id
    from fedids.crypto.wire import WireHeader

    try:
        payload_key = WireHeader.from_array(np.asarray(arrays[0])).key_id
    except ValueError:
        return False
    return header_fp == expected and payload_key == key_id(expected)


def _error_detail(exc: urllib.error.HTTPError) -> str:
    try:
        text = exc.read(500).decode(errors="replace").strip()
    except Exception:  # noqa: BLE001 - best effort only
        return ""
    return f": {text}" if text else ""


def encrypt_v2(
    request: wire.EncryptRequest,
    *,
    url: str,
    token: str,
    ca_file: str | Path | None = None,
    timeout: float = 30.0,
    fallback: Callable[[], list[np.ndarray]] | None = None,
    expected_fingerprint: str | None = None,
    report: dict[str, Any] | None = None,
) -> list[np.ndarray]:
    """Encrypt ``request`` via EaaS; ``fallback`` (e.g. a local ``encrypt_model`` call) runs
    when the service fails, never when it refuses the token (see module docstring).

    If ``report`` is a dict it receives ``encrypted_by`` (``"eaas"`` or ``"local-fallback"``)
    and, after a fallback, ``eaas_error`` (the reason, without the token) -- suitable for
    FitRes metrics.
    """
    try:
        arrays = remote_encrypt_v2(
            url, token, request, timeout, ca_file, expected_fingerprint=expected_fingerprint
        )
    except EaaSError as exc:
        if fallback is None or exc.kind == "auth":
            raise
        log.warning("EaaS failed (%s); encrypting locally as configured", exc)
        if report is not None:
            report["encrypted_by"] = "local-fallback"
            report["eaas_error"] = str(exc)
        return fallback()
    if report is not None:
        report["encrypted_by"] = "eaas"
    return arrays
