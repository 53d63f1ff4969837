"""A federation in one process: the same server loop and devices, no Ray, no gRPC.

For notebooks, benchmarks and fast tests. :func:`run_experiment` runs the very
:class:`fedids.server.loop.FedIDSServer` a ``flwr run`` runs, against client proxies that
call the device code directly: a device is rebuilt from its ``Context`` for every message
(as Flower does), its ``context.state`` persists between messages (as Flower keeps it),
and parameters travel as serialized Flower ``Parameters``, so ``upload_bytes_per_client``
means the same thing. Devices run one after the other (torch's global random state is
shared by threads, and a run must be reproducible from its seed).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flwr.common import (
    Context,
    DisconnectRes,
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    GetParametersIns,
    GetParametersRes,
    GetPropertiesIns,
    GetPropertiesRes,
    RecordDict,
)
from flwr.server.client_manager import SimpleClientManager
from flwr.server.client_proxy import ClientProxy

#: run id used by in-process runs (Flower's are random 64-bit numbers)
INPROCESS_RUN_ID = 4242


class LocalClientProxy(ClientProxy):
    """A device reached by a function call instead of a message."""

    def __init__(
        self,
        cid: str,
        context: Context,
        cfg: dict[str, Any],
        *,
        wrap: Any = None,
    ) -> None:
        super().__init__(cid)
        self.context = context
        self.cfg = cfg
        self.wrap = wrap  # optional hook (tests): wrap(proxy, method, ins, call) -> result

    def _client(self) -> Any:
        from fedids.client_app import client_from_context

        return client_from_context(self.context, cfg=self.cfg, simulation=True).to_client()

    def _call(self, method: str, ins: Any) -> Any:
        def call(ins: Any) -> Any:
            return getattr(self._client(), method)(ins)

        if self.wrap is not None:
            return self.wrap(self, method, ins, call)
        return call(ins)

    def get_properties(
        self, ins: GetPropertiesIns, timeout: float | None, group_id: int | None
    ) -> GetPropertiesRes:
        return self._call("get_properties", ins)

    def get_parameters(
        self, ins: GetParametersIns, timeout: float | None, group_id: int | None
    ) -> GetParametersRes:
        return self._call("get_parameters", ins)

    def fit(self, ins: FitIns, timeout: float | None, group_id: int | None) -> FitRes:
        return self._call("fit", ins)

    def evaluate(
        self, ins: EvaluateIns, timeout: float | None, group_id: int | None
    ) -> EvaluateRes:
        return self._call("evaluate", ins)

    def reconnect(self, ins: Any, timeout: float | None, group_id: int | None) -> DisconnectRes:
        return DisconnectRes(reason="")


def local_federation(
    cfg: dict[str, Any],
    num_devices: int | None = None,
    *,
    run_id: int = INPROCESS_RUN_ID,
    node_configs: list[dict[str, Any]] | None = None,
    wrap: Any = None,
) -> tuple[SimpleClientManager, list[LocalClientProxy]]:
    """A client manager holding ``num_devices`` in-process devices (node ids 1000+i)."""
    n = int(num_devices or cfg["federation"]["num_partitions"])
    manager = SimpleClientManager()
    proxies = []
    for i in range(n):
        node = {"partition-id": i, "num-partitions": n}
        if node_configs is not None:
            node.update(node_configs[i])
        context = Context(
            run_id=run_id,
            node_id=1000 + i,
            node_config=node,
            state=RecordDict(),
            run_config={},
        )
        proxy = LocalClientProxy(str(1000 + i), context, cfg, wrap=wrap)
        manager.register(proxy)
        proxies.append(proxy)
    return manager, proxies


def run_experiment(
    cfg: dict[str, Any],
    run_path: str | Path,
    *,
    num_devices: int | None = None,
    node_configs: list[dict[str, Any]] | None = None,
    wrap: Any = None,
) -> dict[str, Any]:
    """Run ``cfg`` (a composed, plain config) in-process; returns the metrics.json document."""
    from fedids.server_app import make_server

    run_path = Path(run_path)
    manager, _ = local_federation(cfg, num_devices, node_configs=node_configs, wrap=wrap)
    server = make_server(
        cfg,
        INPROCESS_RUN_ID,
        run_path,
        simulation=True,
        client_manager=manager,
        header_extra={"runner": "in-process (fedids.sim.inprocess)"},
    )
    # one device at a time: torch's global RNG (model init, dropout) is shared by threads,
    # and a run must be reproducible from its seed
    server.set_max_workers(1)
    server.fit(int(cfg["num_server_rounds"]), timeout=None)
    return json.loads((run_path / "metrics.json").read_text())
