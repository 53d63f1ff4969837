"""Helpers: a device as Flower would build it for one message, with persistent state."""

from __future__ import annotations

import pytest
from flwr.common import Context, RecordDict


class Device:
    """A node whose ``context.state`` persists between messages, like a SuperNode's."""

    def __init__(self, cfg, partition_id=0, num_partitions=2, run_id=77, **node):
        self.cfg = cfg
        node_config = {"partition-id": partition_id, "num-partitions": num_partitions, **node}
        self.context = Context(
            run_id=run_id,
            node_id=1 + partition_id,
            node_config=node_config,
            state=RecordDict(),
            run_config={},
        )

    def client(self, simulation=True):
        from fedids.client_app import client_from_context

        return client_from_context(self.context, cfg=self.cfg, simulation=simulation)


@pytest.fixture
def device():
    return Device
