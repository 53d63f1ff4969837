"""``fedids eaas``: serve Encryption as a Service for devices too weak to encrypt.

Examples::

    fedids eaas --key-dir pub/ --token-file eaas.token --init-token \\
        --host 10.0.0.7 --port 8443 --certfile certs/server.pem --keyfile certs/server.key

The service uses the codec of ``conf/mode/paillier.yaml``; give the same Hydra overrides
as the federation (``-o mode.value_bits=16``) or the aggregate cannot be decoded.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import stat
import sys
from pathlib import Path
from types import FrameType

log = logging.getLogger("fedids.eaas")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eaas",
        help="serve Encryption as a Service (holds only the public key)",
        description=(
            "HTTP(S) service: POST /v2/encrypt with a bearer token, the plain weights and the "
            "device's share and binding tag, get back the Paillier wire arrays the aggregator "
            "expects. It sees that device's plaintext update, so run it on the device's side; "
            "it can decrypt nothing."
        ),
    )
    p.add_argument("--key-dir", required=True, help="directory (or file) with public.json")
    p.add_argument("--token-file", required=True, help="file holding the bearer token")
    p.add_argument(
        "--init-token",
        action="store_true",
        help="create the token file (random, mode 0600) if it does not exist",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8443)
    p.add_argument("--certfile", help="TLS certificate (e.g. server.pem from `fedids certs`)")
    p.add_argument("--keyfile", help="TLS private key")
    p.add_argument(
        "-o",
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Hydra override for the codec, e.g. mode.key_bits=3072 (repeatable)",
    )
    p.set_defaults(func=run)


def init_token(path: Path) -> bool:
    """Create ``path`` with a random 256-bit token (0600) unless it exists; True if created."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_urlsafe(32) + "\n")
    return True


def _stop(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    from fedids.config import ConfigError, compose_config, to_plain
    from fedids.eaas.server import build_server, read_token

    token_path = Path(args.token_file)
    if args.init_token and init_token(token_path):
        print(f"new token written to {token_path} (copy it to the device's eaas_token_file)")
    try:
        token = read_token(token_path)
        if stat.S_IMODE(token_path.stat().st_mode) & 0o077:
            log.warning("token file %s is readable by other users: chmod 600 it", token_path)
        mode = to_plain(compose_config({"mode": "paillier"}, args.override))["mode"]
        server = build_server(
            args.key_dir,
            mode,
            token,
            host=args.host,
            port=args.port,
            certfile=args.certfile,
            keyfile=args.keyfile,
        )
    except (OSError, ValueError, ConfigError) as exc:
        print(f"fedids eaas: {exc}", file=sys.stderr)
        return 1
    if not server.tls and args.host not in ("127.0.0.1", "::1", "localhost"):
        log.warning("serving plaintext weights over plain HTTP on %s: use --certfile", args.host)
    signal.signal(signal.SIGTERM, _stop)
    print(f"fedids eaas serving {server.url} key {server.fingerprint}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        log.info("fedids eaas stopped after %d requests", server.requests_served)
    return 0
