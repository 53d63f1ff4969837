"""``fedids keygen``: make the Paillier key pair the devices share.

Example::

    fedids keygen --bits 2048 --out keys/

Writes ``public.json`` and ``private.json`` (mode 0600 from creation). Copy the directory to
every device (node-config ``key-dir``); the server needs nothing, or only the fingerprint
for ``mode.expected_fingerprint``. Prints the fingerprint, never key material.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fedids.crypto.codec import PRODUCTION_KEY_BITS


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "keygen",
        help="make a Paillier key pair (public.json, private.json) for the devices",
        description=(
            "Generate a Paillier key pair and write public.json and private.json (0600) into "
            "--out. Every device gets a copy of the directory; the server needs no key. "
            "Prints the public key's SHA-256 fingerprint (for mode.expected_fingerprint)."
        ),
    )
    p.add_argument(
        "--bits",
        type=int,
        default=2048,
        choices=PRODUCTION_KEY_BITS,
        help="modulus size in bits (default 2048)",
    )
    p.add_argument("--out", required=True, help="key directory to create or fill")
    p.add_argument("--force", action="store_true", help="replace existing keys in --out")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fedids.crypto.keys import fingerprint, generate_keypair, save_keypair

    out = Path(args.out)
    public, private = generate_keypair(args.bits)
    try:
        save_keypair(out, public, private, overwrite=args.force)
    except FileExistsError as exc:
        print(f"fedids keygen: {exc} (use --force to replace them)", file=sys.stderr)
        return 1
    print(f"wrote {out / 'public.json'} and {out / 'private.json'} (0600)")
    print(f"bits: {args.bits}")
    print(f"fingerprint: {fingerprint(public)}")
    return 0
