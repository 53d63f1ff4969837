"""fedids log lines where Flower's go: the console of ``flwr run --stream`` and the logs.

Flower's ``flwr`` logger has its own console handler, and it is the one whose output the
SuperLink streams back to ``flwr run --stream``. fedids' own loggers (``fedids.*``) get the
same handlers, so a user sees "round 1: macro-F1 ..." beside Flower's "[ROUND 1]".
"""

from __future__ import annotations

import logging


def route_to_flower(level: int = logging.INFO) -> None:
    """Give the ``fedids`` logger Flower's handlers (idempotent; no double lines)."""
    flwr = logging.getLogger("flwr")
    ours = logging.getLogger("fedids")
    for handler in flwr.handlers:
        if handler not in ours.handlers:
            ours.addHandler(handler)
    ours.setLevel(level)
    ours.propagate = False
