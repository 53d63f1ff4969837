"""``fedids certs``: make the TLS CA + SuperLink certificate and SuperNode auth keys.

Examples::

    fedids certs --out certs --server-name superlink.plant.local --server-ip 10.0.0.5
    fedids certs --out keys --node-key device0 --node-key device1
"""

from __future__ import annotations

import argparse
import sys

from fedids.deploy.certs import make_supernode_key, san_entries, write_certs


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "certs",
        help="make a CA + SuperLink TLS certificate and/or SuperNode auth keys",
        description=(
            "Write ca.crt, ca.key, server.pem and server.key (keys 0600) with the given DNS "
            "names and IPs in the certificate's subjectAltName, and/or one OpenSSH ECDSA "
            "P-384 key pair per --node-key for SuperNode authentication. An existing CA in "
            "--out is reused."
        ),
    )
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument(
        "--server-name",
        action="append",
        default=[],
        metavar="NAME",
        help="DNS name the SuperNodes dial (repeatable)",
    )
    p.add_argument(
        "--server-ip",
        action="append",
        default=[],
        metavar="IP",
        help="IP address the SuperNodes dial (repeatable)",
    )
    p.add_argument("--days", type=int, default=825, help="server certificate validity in days")
    p.add_argument(
        "--node-key",
        action="append",
        default=[],
        metavar="NAME",
        help="write SuperNode key pair NAME and NAME.pub (repeatable)",
    )
    p.add_argument(
        "--no-loopback",
        action="store_true",
        help="do not add localhost/127.0.0.1/::1 to the SAN (the SuperLink's own helper "
        "processes dial 127.0.0.1 with TLS: keep them unless the SuperLink never binds 0.0.0.0)",
    )
    p.add_argument("--force", action="store_true", help="replace existing files")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not (args.server_name or args.server_ip or args.node_key):
        print("fedids certs: give --server-name/--server-ip and/or --node-key", file=sys.stderr)
        return 2
    try:
        if args.server_name or args.server_ip:
            paths = write_certs(
                args.out,
                args.server_name,
                args.server_ip,
                days=args.days,
                overwrite=args.force,
                loopback=not args.no_loopback,
            )
            print(f"CA certificate:     {paths.ca_cert}  (copy to every device)")
            print(f"CA key:             {paths.ca_key}  (keep offline)")
            print(f"server certificate: {paths.server_cert}")
            print(f"server key:         {paths.server_key}")
            print(f"names in the SAN:   {', '.join(san_entries(paths.server_cert))}")
        for name in args.node_key:
            private, public = make_supernode_key(args.out, name, overwrite=args.force)
            print(f"SuperNode key:      {private}  (stays on the device)")
            print(f"register with:      flwr supernode register {public} <connection>")
    except (FileExistsError, ValueError) as exc:
        print(f"fedids certs: {exc}", file=sys.stderr)
        return 1
    return 0
