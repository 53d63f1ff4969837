"""Device side: record that this bundle's code ran here, then answer."""

from __future__ import annotations

import os
from pathlib import Path

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

#: the harness sets this in every device's environment; one file per (run, node) that ran
MARKER_ENV = "CANARY_MARKER_DIR"

app = ClientApp()


@app.query()
def query(msg: Message, context: Context) -> Message:
    marker_dir = Path(os.environ[MARKER_ENV])
    marker_dir.mkdir(parents=True, exist_ok=True)
    (marker_dir / f"{context.run_id}-{context.node_id}").write_text(str(os.getpid()))
    return Message(RecordDict({"answer": ConfigRecord({"ran": True})}), reply_to=msg)
