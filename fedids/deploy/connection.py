"""The ``flwr`` CLI's connection file: ``$FLWR_HOME/config.toml`` naming one SuperLink.

Why a module of its own: the operator machine needs exactly this file (docs/deploy.md, step
3), and the harness writes it into a private ``FLWR_HOME`` so tests never touch
``~/.flwr`` and parallel federations do not collide.
"""

from __future__ import annotations

from pathlib import Path

#: name of the connection the deployment harness writes (and makes the default)
CONNECTION = "fedids-deploy"


def write_connection(
    flwr_home: Path, address: str, ca_cert: Path | None, name: str = CONNECTION
) -> Path:
    """Write ``$FLWR_HOME/config.toml`` with one SuperLink connection, made the default.

    ``ca_cert`` None writes ``insecure = true`` (no TLS; simulation SuperLinks on loopback).
    """
    flwr_home.mkdir(parents=True, exist_ok=True)
    lines = ["[superlink]", f'default = "{name}"', "", f"[superlink.{name}]"]
    lines.append(f'address = "{address}"')
    if ca_cert is None:
        lines.append("insecure = true")
    else:
        lines.append(f'root-certificates = "{Path(ca_cert).resolve()}"')
    path = flwr_home / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return path
