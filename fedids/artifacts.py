"""What every run leaves behind in ``<run-dir>/<run-name>/``.

``metrics.json`` is rewritten (atomically) after every round, so a run that fails or is
stopped keeps the rounds it completed. ``config.yaml`` is the composed configuration.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import yaml


def make_run_name(run_id: int | str | None = None) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{run_id}" if run_id not in (None, "") else stamp


def run_header(cfg: dict[str, Any], run_name: str, **extra: Any) -> dict[str, Any]:
    """The fields that open every ``metrics.json``: what ran, on what, evaluated where."""
    return {
        "run_name": run_name,
        "mode": cfg["mode"]["name"],
        "classification": cfg["classification"]["name"],
        "dataset": cfg["dataset"]["name"],
        "synthetic_data": cfg["dataset"]["name"] == "synthetic",
        "evaluation_split": "union of the devices' validation splits (train.val_fraction)",
        **extra,
    }


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


class RunRecorder:
    """Collects one record per round and keeps ``metrics.json`` current."""

    def __init__(self, run_path: Path, cfg: dict[str, Any], header: dict[str, Any]) -> None:
        self.run_path = run_path
        self.cfg = cfg
        self.header = header
        self.rounds: list[dict[str, Any]] = []
        run_path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_path / "config.yaml", yaml.safe_dump(cfg, sort_keys=False))
        self.flush()

    def add_round(self, record: dict[str, Any]) -> None:
        self.rounds = [r for r in self.rounds if r["round"] != record["round"]] + [record]
        self.flush()

    def flush(self, status: str = "running", error: str | None = None) -> None:
        doc: dict[str, Any] = {**self.header, "status": status}
        if error is not None:
            doc["error"] = error
        doc["rounds"] = self.rounds
        atomic_write_text(self.run_path / "metrics.json", json.dumps(doc, indent=2))

    def fail(self, line: str) -> None:
        """The run stopped: keep the completed rounds, say why in one line."""
        self.flush(status="failed", error=line)

    def summary_table(self) -> str:
        """A readable per-round table: the figures that matter for IDS."""
        if not self.rounds:
            return "(no completed rounds)"
        classes = list(self.rounds[0]["per_class"].keys())
        short = [c[:8] for c in classes]
        head = ["round", "acc", "macroF1", "FPR"] + [f"R:{c}" for c in short] + ["sec", "up KB"]
        lines = [" ".join(f"{h:>10}" for h in head)]
        for r in self.rounds:
            cells = [
                f"{r['round']:>10d}",
                f"{r['accuracy']:>10.4f}",
                f"{r['macro_f1']:>10.4f}",
                f"{r['false_positive_rate']:>10.4f}",
            ]
            cells += [f"{r['per_class'][c]['recall']:>10.4f}" for c in classes]
            cells += [
                f"{r['round_seconds']:>10.2f}",
                f"{r['upload_bytes_per_client'] / 1024:>10.1f}",
            ]
            lines.append(" ".join(cells))
        return "\n".join(lines)
