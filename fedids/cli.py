"""The ``fedids`` command line: one subcommand per module in :mod:`fedids.commands`.

Each command module defines ``register(subparsers)``, which adds its parser and sets
``func`` to a callable taking the parsed arguments and returning an exit code.
Modules are imported only when present so that the CLI starts fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

#: subcommand modules, in the order ``fedids --help`` lists them
COMMANDS = (
    "synth",
    "demo",
    "report",
    "baseline",
    "keygen",
    "bench",
    "detect",
    "subscribe",
    "outbox",
    "eaas",
    "certs",
    "bundle",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fedids",
        description="Privacy-preserving federated intrusion detection for Industrial IoT.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"fedids.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"fedids.commands.{name}":
                continue  # command not shipped in this build
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Flower's logger has its own handler; propagating too would print every line twice
    logging.getLogger("flwr").propagate = False
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
