"""Server side: ask every connected device once and write what came back (errors included)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid, ServerApp

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    deadline = time.monotonic() + 30
    nodes = list(grid.get_node_ids())
    while not nodes and time.monotonic() < deadline:
        time.sleep(0.5)
        nodes = list(grid.get_node_ids())
    messages = [
        Message(RecordDict({"ask": ConfigRecord({"x": 1})}), dst_node_id=n, message_type="query")
        for n in nodes
    ]
    replies = grid.send_and_receive(messages, timeout=60)
    out = []
    for reply in replies:
        entry: dict = {"node": reply.metadata.src_node_id}
        if reply.has_error():
            entry["error"] = {"code": reply.error.code, "reason": reply.error.reason}
        else:
            entry["ran"] = bool(reply.content["answer"]["ran"])
        out.append(entry)
    path = Path(str(context.run_config["out-dir"])) / f"{context.run_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"nodes": len(nodes), "replies": out}))
