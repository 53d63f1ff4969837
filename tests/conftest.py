"""Shared test helpers: small configs.

Most tests drive clients and strategies in-process (``fedids.inprocess``: 0.3 s instead of
a Ray simulation); a few e2e tests run the real ``flwr run`` path.
"""

from __future__ import annotations

import os
import signal

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

# Ctrl-C tests send SIGINT to processes this suite starts, as a terminal would. A suite
# started as a background job (`cmd &` in a non-interactive shell, as some CI runners do)
# inherits SIGINT *ignored*, and so would every process it starts: re-enable it here (a
# handled signal is reset to its default in children), so those tests see what a user's
# Ctrl-C does.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def small_cfg(**run_config):
    from fedids.config import compose_config, to_plain

    rc = {"hydra-overrides": "dataset.rows=6000"}
    rc.update(run_config)
    return to_plain(compose_config(rc))
