"""fedids log lines where Flower's go: the console of ``flwr run --stream`` and the logs.

Flower's ``flwr`` logger has its own console handler, and it is the one whose output the
SuperLink streams back to ``flwr run --stream``. fedids' own loggers (``fedids.*``) hand
their records to that logger (its handlers and filters as they are at that moment), so a
user sees "round 1: macro-F1 ..." beside Flower's "[ROUND 1]".
"""

from __future__ import annotations

import logging


class _ToFlower(logging.Handler):
    #: marks the handler across re-imports of this module (Flower re-loads an app's modules,
    #: which makes a new ``_ToFlower`` class: an isinstance check would add a second handler)
    fedids_to_flower = True

    def emit(self, record: logging.LogRecord) -> None:
        flwr = logging.getLogger("flwr")
        if flwr.isEnabledFor(record.levelno):
            flwr.handle(record)


def route_to_flower(level: int = logging.INFO) -> None:
    """Send ``fedids`` log records through the ``flwr`` logger (idempotent)."""
    ours = logging.getLogger("fedids")
    if not any(getattr(h, "fedids_to_flower", False) for h in ours.handlers):
        ours.addHandler(_ToFlower())
    ours.setLevel(level)
    ours.propagate = False
