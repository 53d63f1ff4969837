"""The app registry the SuperLink fetches signed bundles from.

Why: in Flower 1.42 the SuperLink attaches signatures ("verifications") to a bundle only when
it fetches the bundle from an app registry for ``flwr run @publisher/app==version``
(flwr/superlink/servicer/control/control_handlers.py, ``_get_remote_fab``); the registry's
address is the SuperLink's ``FLWR_SUPERGRID_API_URL`` environment variable (default: Flower
Hub). This module answers the two requests the SuperLink makes:

* ``POST <base>/hub/fetch-fab`` with ``{"app_id", "app_version", "flwr_version"}`` ->
  ``{"fab_url": ..., "verifications": [{"public_key_id", "signature", "signed_at"}, ...]}``
* ``GET <fab_url>`` -> the bundle's bytes.

The registry is not trusted for integrity: devices check every signature against their own
``--trusted-entities`` file, so a registry (or SuperLink) that serves other bytes or other
signatures gets the run refused. It decides only which signed versions are available. Run it
on the SuperLink host, bound to 127.0.0.1 (only the SuperLink talks to it).

Store layout: ``<root>/<publisher>/<name>/<version>/app.fab`` and ``signatures.json``
(``{"sha256": ..., "signatures": [...]}``; signatures for other bytes are dropped).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from fedids.deploy.signing import FabInfo, Signature, fab_info

log = logging.getLogger("fedids.registry")

#: path prefix of the API (the SuperLink is given ``http://host:port/v1``)
API_PREFIX = "/v1"
MAX_REQUEST = 64 * 1024
_PART = re.compile(r"^[A-Za-z0-9_.-]+$")
_VERSION = re.compile(r"^\d+\.\d+\.\d+$")


@dataclass(frozen=True)
class Entry:
    """One stored version: the bundle file and its signatures."""

    info: FabInfo
    path: Path
    signatures: list[Signature]


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


class AppStore:
    """Bundles and their signatures in a directory tree (see the module docstring)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _dir(self, info: FabInfo) -> Path:
        for part in (info.publisher, info.name, info.version):
            if not _PART.match(part) or part in (".", ".."):
                raise ValueError(f"unsafe name in bundle metadata: {part!r}")
        return self.root / info.publisher / info.name / info.version

    def add_fab(self, fab: bytes, origin: str = "bundle") -> FabInfo:
        """Store ``fab`` under its own publisher/name/version (replacing other bytes there)."""
        info = fab_info(fab, origin)
        if not _VERSION.match(info.version):
            raise ValueError(f"{origin}: version {info.version!r} is not x.y.z (Flower needs it)")
        folder = self._dir(info)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "app.fab").write_bytes(fab)
        sig_file = folder / "signatures.json"
        if not sig_file.exists() or self._read_sigs(folder)[0] != info.sha256:
            self._write_sigs(folder, info.sha256, [])
        return info

    def add_signature(self, info: FabInfo, signature: Signature) -> None:
        """Record ``signature`` for the stored bytes of ``info`` (one per key id)."""
        folder = self._dir(info)
        sha, sigs = self._read_sigs(folder)
        if sha != info.sha256:
            raise ValueError(f"{folder}: stored bundle differs from the one signed")
        sigs = [s for s in sigs if s.public_key_id != signature.public_key_id] + [signature]
        self._write_sigs(folder, sha, sigs)

    def entries(self) -> list[Entry]:
        """Every stored version, sorted by app id and version."""
        out = []
        for fab in sorted(self.root.glob("*/*/*/app.fab")):
            info = fab_info(fab.read_bytes(), str(fab))
            out.append(Entry(info, fab, self._read_sigs(fab.parent)[1]))
        return sorted(out, key=lambda e: (e.info.app_id, _version_key(e.info.version)))

    def find(self, app_id: str, version: str | None) -> Entry | None:
        """The entry for ``app_id`` at ``version`` (the highest version when None)."""
        matches = [e for e in self.entries() if e.info.app_id == app_id]
        if version is not None:
            matches = [e for e in matches if e.info.version == version]
        return matches[-1] if matches else None

    def by_hash(self, sha256: str) -> Entry | None:
        return next((e for e in self.entries() if e.info.sha256 == sha256), None)

    @staticmethod
    def _read_sigs(folder: Path) -> tuple[str, list[Signature]]:
        try:
            doc = json.loads((folder / "signatures.json").read_text())
        except (OSError, json.JSONDecodeError):
            return "", []
        return str(doc.get("sha256", "")), [Signature.from_dict(s) for s in doc["signatures"]]

    @staticmethod
    def _write_sigs(folder: Path, sha: str, sigs: list[Signature]) -> None:
        doc = {"sha256": sha, "signatures": [s.to_dict() for s in sigs]}
        (folder / "signatures.json").write_text(json.dumps(doc, indent=2) + "\n")


class _Handler(BaseHTTPRequestHandler):
    server: RegistryServer
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: object) -> None:  # method, path, status only
        log.info("%s %s", self.address_string(), fmt % args)

    def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, doc: dict) -> None:
        self._send(status, json.dumps(doc).encode())

    def do_POST(self) -> None:  # noqa: N802 (http.server naming)
        if self.path != f"{API_PREFIX}/hub/fetch-fab":
            self._json(HTTPStatus.NOT_FOUND, {"detail": "not found"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= MAX_REQUEST:
            self._json(HTTPStatus.BAD_REQUEST, {"detail": "bad request size"})
            return
        try:
            req = json.loads(self.rfile.read(length))
            app_id, version = str(req["app_id"]), req.get("app_version")
        except (ValueError, KeyError, TypeError):
            self._json(HTTPStatus.BAD_REQUEST, {"detail": "expected JSON with app_id"})
            return
        entry = self.server.store.find(app_id, None if version is None else str(version))
        if entry is None:
            self._json(HTTPStatus.NOT_FOUND, {"detail": f"{app_id} {version or ''} not here"})
            return
        host = self.headers.get("Host") or self.server.host_port
        self.server.count("fetch")
        self._json(
            HTTPStatus.OK,
            {
                "fab_url": f"http://{host}{API_PREFIX}/fabs/{entry.info.sha256}.fab",
                "verifications": [s.to_dict() for s in entry.signatures],
            },
        )

    def do_GET(self) -> None:  # noqa: N802
        found = re.fullmatch(rf"{API_PREFIX}/fabs/([0-9a-f]{{64}})\.fab", self.path)
        entry = self.server.store.by_hash(found.group(1)) if found else None
        if entry is None:
            self._json(HTTPStatus.NOT_FOUND, {"detail": "not found"})
            return
        self.server.count("download")
        self._send(HTTPStatus.OK, entry.path.read_bytes(), "application/octet-stream")


class RegistryServer(ThreadingHTTPServer):
    """HTTP registry over an :class:`AppStore`; give the SuperLink :attr:`url`."""

    daemon_threads = True

    def __init__(self, store: AppStore, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__((host, port), _Handler)
        self.store = store
        self.served = {"fetch": 0, "download": 0}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def host_port(self) -> str:
        host, port = self.server_address[:2]
        return f"{host}:{port}"

    @property
    def url(self) -> str:
        """The value for the SuperLink's ``FLWR_SUPERGRID_API_URL``."""
        return f"http://{self.host_port}{API_PREFIX}"

    def count(self, what: str) -> None:
        with self._lock:
            self.served[what] += 1

    def serve_in_thread(self) -> RegistryServer:
        self._thread = threading.Thread(target=self.serve_forever, name="fedids-registry")
        self._thread.daemon = True
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and release the port."""
        if self._thread is not None:
            self.shutdown()
            self._thread.join(5)
        self.server_close()
