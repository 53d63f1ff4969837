"""Free loopback TCP ports for the processes a harness starts (Flower, the broker, EaaS).

By default the OS picks the port. ``FEDIDS_PORT_RANGE=LOW-HIGH`` makes every pick come from
that range instead, at random, checked free by binding it: two harnesses on one machine
(parallel test workers) given disjoint ranges can never be handed the same port. That
matters because Flower's gRPC servers bind with ``SO_REUSEPORT``: a second server on a port
already in use does not fail, it silently shares the connections. A range below the OS's
ephemeral range (32768-60999 on Linux) is also never taken by an outgoing connection.
"""

from __future__ import annotations

import os
import random
import socket

RANGE_ENV = "FEDIDS_PORT_RANGE"


def _range() -> tuple[int, int] | None:
    raw = os.environ.get(RANGE_ENV, "").strip()
    if not raw:
        return None
    try:
        low, high = (int(x) for x in raw.split("-"))
    except ValueError:
        raise ValueError(f"{RANGE_ENV}={raw!r}: expected LOW-HIGH, e.g. 20000-24999") from None
    if not 1024 <= low < high <= 65535:
        raise ValueError(f"{RANGE_ENV}={raw!r}: need 1024 <= LOW < HIGH <= 65535")
    return low, high


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (from ``FEDIDS_PORT_RANGE`` if set)."""
    bounds = _range()
    if bounds is None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            return int(s.getsockname()[1])
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randint(*bounds)
        if _bindable(host, port):
            return port
    raise RuntimeError(f"{RANGE_ENV}={bounds[0]}-{bounds[1]}: no free port found in 200 tries")
