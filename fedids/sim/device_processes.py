"""A federation whose devices run in processes of their own: real concurrency, no Flower stack.

The in-process runner (:mod:`fedids.sim.inprocess`) calls every device in the server's process,
one at a time, because torch's global random state is shared by threads. Measuring how
long a federation takes when devices work side by side (stragglers, buffered aggregation)
needs them to run at the same time: here each device is an OS process holding its own
``Context`` (its ``context.state`` persists between messages, as on a SuperNode) and
answering Flower's legacy fit/evaluate calls through a pipe. The server side is the very
:class:`~fedids.server.loop.FedIDSServer` (or its buffered subclass) a ``flwr run`` runs;
only the transport differs (a pipe instead of gRPC).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import threading
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from flwr.common import Context, RecordDict
from flwr.server.client_manager import SimpleClientManager
from flwr.server.client_proxy import ClientProxy

from fedids.sim.inprocess import INPROCESS_RUN_ID, LocalClientProxy

#: seconds a device process gets to exit after being asked to, before it is terminated
STOP_SECONDS = 10.0


def _serve(conn: Connection, cfg: dict[str, Any], cid: str, node: dict[str, Any], run_id: int):
    """A device process: answer calls until told to stop (``None``)."""
    _warm_up_torch()
    context = Context(
        run_id=run_id, node_id=int(cid), node_config=node, state=RecordDict(), run_config={}
    )
    device = LocalClientProxy(cid, context, cfg)
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        method, ins = message
        try:
            conn.send(("ok", getattr(device, method)(ins, None, None)))
        except Exception as exc:  # noqa: BLE001 - the device's failure goes back to the server
            conn.send(("error", f"{exc.__class__.__name__}: {exc}"))


def _warm_up_torch() -> None:
    """Pay torch's first-training-step cost (seconds: lazy imports and kernel set-up) before
    the run, so a device's measured speed (and a slowdown derived from it) is its steady one."""
    import numpy as np
    import torch

    from fedids.model import build_model
    from fedids.task import train

    torch.set_num_threads(1)
    model = build_model(4, 2, [8], 0.0, seed=0)
    x, y = np.zeros((8, 4), dtype=np.float32), np.zeros(8, dtype=np.int64)
    train(
        model,
        x,
        y,
        epochs=1,
        batch_size=8,
        lr=1e-3,
        weight_decay=0.0,
        n_classes=2,
        weighting="none",
        seed=0,
    )


class DeviceProcessError(RuntimeError):
    """A device process raised (its one-line message) or died."""


class ProcessClientProxy(LocalClientProxy):
    """A device in another process, reached through a pipe (the calls are LocalClientProxy's:
    fit, evaluate, ... all go through :meth:`_call`)."""

    def __init__(self, cid: str, conn: Connection, process: mp.process.BaseProcess) -> None:
        ClientProxy.__init__(self, cid)
        self.conn = conn
        self.process = process
        self._lock = threading.Lock()

    def _call(self, method: str, ins: Any) -> Any:
        with self._lock:
            try:
                self.conn.send((method, ins))
                status, payload = self.conn.recv()
            except (EOFError, OSError, BrokenPipeError) as exc:
                raise DeviceProcessError(
                    f"device process {self.cid} is gone ({exc.__class__.__name__})"
                ) from None
        if status == "error":
            raise DeviceProcessError(payload)
        return payload


class ProcessFederation:
    """``num_devices`` device processes (node ids 1000+i) and a client manager holding them.

    Use as a context manager: every process it started is stopped on exit (asked, then
    terminated by its own handle if it does not exit in time).
    """

    def __init__(
        self,
        cfg: dict[str, Any],
        num_devices: int | None = None,
        *,
        run_id: int = INPROCESS_RUN_ID,
        node_configs: list[dict[str, Any]] | None = None,
    ) -> None:
        self.cfg = cfg
        self.n = int(num_devices or cfg["federation"]["num_partitions"])
        self.run_id = run_id
        self.node_configs = node_configs
        self.proxies: list[ProcessClientProxy] = []
        self.manager = SimpleClientManager()

    def __enter__(self) -> ProcessFederation:
        ctx = mp.get_context("spawn")  # no torch/thread state copied from the server process
        try:
            for i in range(self.n):
                node = {"partition-id": i, "num-partitions": self.n}
                if self.node_configs is not None:
                    node.update(self.node_configs[i])
                parent, child = ctx.Pipe()
                cid = str(1000 + i)
                process = ctx.Process(
                    target=_serve,
                    args=(child, self.cfg, cid, node, self.run_id),
                    name=f"fedids-device-{i}",
                    daemon=True,
                )
                process.start()
                child.close()
                proxy = ProcessClientProxy(cid, parent, process)
                self.proxies.append(proxy)
                self.manager.register(proxy)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for proxy in self.proxies:
            try:
                proxy.conn.send(None)
            except (OSError, BrokenPipeError):
                pass
        for proxy in self.proxies:
            proxy.process.join(STOP_SECONDS)
            if proxy.process.is_alive():
                proxy.process.terminate()
                proxy.process.join(STOP_SECONDS)
            if proxy.process.is_alive():
                proxy.process.kill()
                proxy.process.join()
            proxy.conn.close()
        self.proxies = []


def run_with_device_processes(
    cfg: dict[str, Any],
    run_path: str | Path,
    *,
    num_devices: int | None = None,
    node_configs: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Run ``cfg`` with one process per device; returns the metrics.json document."""
    from fedids.server_app import make_server

    run_path = Path(run_path)
    with ProcessFederation(cfg, num_devices, node_configs=node_configs) as fed:
        server = make_server(
            cfg,
            fed.run_id,
            run_path,
            simulation=True,
            client_manager=fed.manager,
            header_extra={"runner": "device processes (fedids.sim.device_processes)"},
        )
        server.fit(int(cfg["num_server_rounds"]), timeout=None)
    return json.loads((run_path / "metrics.json").read_text())
