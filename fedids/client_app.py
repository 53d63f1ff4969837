"""The ClientApp: one device of a fedids federation (see :mod:`fedids.device`).

The experiment (dataset settings, model, rounds, mode asked for) comes from the run-config;
what protects the site (keys, whether plaintext may leave, an encryption service, the
least number of contributors, where the model is written) comes from the device's own
node-config, read by :class:`fedids.device.policy.DevicePolicy`. Node-config keys:
``partition-id``, ``num-partitions``, ``data-path``, ``key-dir``, ``expected-fingerprint``,
``allow-plain``, ``min-contributors``, ``max-change``, ``run-dir``, ``eaas-url``,
``eaas-token-file``, ``eaas-ca-file``, ``eaas-timeout``, ``eaas-fallback-local``.
"""

from __future__ import annotations

from typing import Any

from flwr.client import ClientApp
from flwr.common import Context

from fedids.config import compose_config, to_plain
from fedids.device.client import FedIDSClient, client_for
from fedids.failures import device_guard


def client_from_context(
    context: Context, *, cfg: dict[str, Any] | None = None, simulation: bool | None = None
) -> FedIDSClient:
    """Build the device from its context (``cfg``: an already composed config, in-process)."""
    if cfg is None:
        cfg = to_plain(compose_config(context.run_config))
    return client_for(
        cfg, dict(context.node_config), context.state, int(context.run_id), simulation=simulation
    )


def client_fn(context: Context):
    return client_from_context(context).to_client()


# device_guard: a known error (bad file, policy refusal...) becomes one line naming this
# device, with no traceback on anybody's console
app = ClientApp(client_fn=client_fn, mods=[device_guard])
