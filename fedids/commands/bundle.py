"""``fedids bundle``: sign app bundles, write trusted-entities files, serve the app registry.

Why: devices run the code of the bundle the SuperLink hands them. With
``flower-supernode --trusted-entities`` they run only bundles signed by a publisher key they
trust; Flower 1.42 relays signatures only for bundles its SuperLink fetches from an app
registry (``FLWR_SUPERGRID_API_URL``). docs/deploy.md walks through it; in short::

    fedids bundle keygen --out signing --name release            # publisher, once
    fedids bundle sign --key signing/release --store apps --app .  # each release
    fedids bundle trust signing/release.pub --out trusted-entities.yaml   # to every device
    fedids bundle serve --store apps --port 8700                 # on the SuperLink host
    flwr run @fedids/fedids==0.1.0 <connection> --stream         # the operator
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bundle",
        help="signed app bundles: publisher keys, signatures, trusted entities, app registry",
        description=(
            "Devices started with flower-supernode --trusted-entities run only app bundles "
            "signed by a key they trust; the SuperLink fetches signed bundles from the app "
            "registry named by its FLWR_SUPERGRID_API_URL. See docs/deploy.md."
        ),
    )
    sub = p.add_subparsers(dest="bundle_command", metavar="ACTION", required=True)

    k = sub.add_parser("keygen", help="make an Ed25519 publisher key pair (OpenSSH format)")
    k.add_argument("--out", required=True, help="output directory")
    k.add_argument("--name", default="publisher", help="file name of the private key")
    k.add_argument("--force", action="store_true", help="replace existing files")
    k.set_defaults(func=_keygen)

    s = sub.add_parser("sign", help="build (or take) a bundle, sign it, put it in a store")
    s.add_argument("--key", required=True, help="publisher private key (Ed25519)")
    s.add_argument("--store", required=True, help="registry directory")
    source = s.add_mutually_exclusive_group(required=True)
    source.add_argument("--app", help="app directory to build (what `flwr build` packs)")
    source.add_argument("--fab", help="a .fab file made by `flwr build`")
    s.set_defaults(func=_sign)

    t = sub.add_parser("trust", help="write a trusted-entities YAML for flower-supernode")
    t.add_argument("public_keys", nargs="+", help="publisher .pub files (or ssh-ed25519 lines)")
    t.add_argument("--out", required=True, help="YAML file to write")
    t.set_defaults(func=_trust)

    v = sub.add_parser("list", help="what a store holds, and who signed it")
    v.add_argument("--store", required=True, help="registry directory")
    v.add_argument("--trusted", help="trusted-entities YAML: say which signatures verify")
    v.set_defaults(func=_list)

    r = sub.add_parser("serve", help="serve a store to the SuperLink (FLWR_SUPERGRID_API_URL)")
    r.add_argument("--store", required=True, help="registry directory")
    r.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback)")
    r.add_argument("--port", type=int, default=8700)
    r.set_defaults(func=_serve)


def _keygen(args: argparse.Namespace) -> int:
    from fedids.deploy.signing import generate_signing_key, key_id, load_public_key

    try:
        private, public = generate_signing_key(args.out, args.name, overwrite=args.force)
    except FileExistsError as exc:
        print(f"{exc}", file=sys.stderr)
        return 2
    print(f"private key {private} (0600: keep it with whoever releases the app)")
    print(f"public key  {public}  id {key_id(load_public_key(public))}")
    return 0


def _sign(args: argparse.Namespace) -> int:
    from fedids.deploy.registry import AppStore
    from fedids.deploy.signing import SigningError, build_fab, load_private_key, sign_fab

    try:
        key = load_private_key(args.key)
        origin = args.app or args.fab
        fab = build_fab(args.app) if args.app else Path(args.fab).read_bytes()
        store = AppStore(args.store)
        info = store.add_fab(fab, origin)
        signature = sign_fab(fab, key)
        store.add_signature(info, signature)
    except (SigningError, ValueError, OSError) as exc:
        print(f"cannot sign: {exc}", file=sys.stderr)
        return 2
    print(
        f"signed {info.app_id} {info.version} (sha256 {info.sha256[:16]}...) "
        f"with {signature.public_key_id}"
    )
    print(f"run it with: flwr run {info.spec} <connection> --stream")
    return 0


def _trust(args: argparse.Namespace) -> int:
    from fedids.deploy.signing import SigningError, write_trusted_entities

    try:
        path = write_trusted_entities(args.out, args.public_keys)
    except SigningError as exc:
        print(f"{exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}: give it to every device as flower-supernode --trusted-entities {path}")
    return 0


def _list(args: argparse.Namespace) -> int:
    import yaml

    from fedids.deploy.registry import AppStore
    from fedids.deploy.signing import load_public_key, verify_fab

    trusted = {}
    if args.trusted:
        entries = yaml.safe_load(Path(args.trusted).read_text()) or {}
        trusted = {k: load_public_key(v) for k, v in entries.items()}
    for entry in AppStore(args.store).entries():
        fab = entry.path.read_bytes()
        print(f"{entry.info.spec}  sha256 {entry.info.sha256[:16]}...")
        for sig in entry.signatures:
            key = trusted.get(sig.public_key_id)
            verdict = ""
            if args.trusted:
                ok = key is not None and verify_fab(fab, sig, key)
                verdict = " VERIFIES" if ok else " not trusted"
            print(f"  signed by {sig.public_key_id} at {sig.signed_at}{verdict}")
        if not entry.signatures:
            print("  unsigned: devices with trusted entities refuse it")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from fedids.deploy.registry import AppStore, RegistryServer

    server = RegistryServer(AppStore(args.store), args.host, args.port)
    print(f"app registry for {Path(args.store).resolve()} on {server.url}")
    print(f"start the SuperLink with FLWR_SUPERGRID_API_URL={server.url}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
