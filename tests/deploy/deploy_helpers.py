"""Constants and small helpers shared by the deployment tests (importable, unlike conftest)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from fedids.deploy.flwr_cli import RunResult
from fedids.deploy.harness import Federation
from fedids.deploy.proctrack import alive, group_members, label

REPO = Path(__file__).resolve().parents[2]
#: small keys keep unit tests fast; the codec accepts them (production configs may not)
TEST_KEY_BITS = 512
TOKEN = "test-token-0123456789abcdef"


def python_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "fedids.cli", *args]


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def assert_all_gone(fed: Federation) -> None:
    """Nothing of the federation runs any more: its daemons and every process of its group."""
    leftover = [pid for pid in fed.all_pids() if alive(pid)]
    leftover += [pid for pid, _ in group_members(fed.group)]
    assert not leftover, f"still running after close: {[(p, label(p)) for p in leftover]}"


ROWS = (  # small data and model: a run is dominated by Flower's start-ups
    "dataset.rows=8000 encoding.numeric=[quantile] encoding.bins=8 encoding.refine=false "
    "model.hidden=[16]"
)


def run_config(run_dir: Path, run_name: str, rounds: int = 2, **extra: str) -> str:
    """A ``flwr run -c`` string; ``hydra`` goes into the hydra-overrides key."""
    hydra = " ".join([ROWS, extra.pop("hydra", "")]).strip()
    parts = [
        f"num-server-rounds={rounds}",
        f"run-dir='{run_dir}'",
        f"run-name='{run_name}'",
        f"hydra-overrides='{hydra}'",
    ]
    parts += [f"{k.replace('_', '-')}={v}" for k, v in extra.items()]
    return " ".join(parts)


def metrics(run_dir: Path, run_name: str) -> dict:
    return json.loads((run_dir / run_name / "metrics.json").read_text())


def explain(result: RunResult, fed: Federation) -> str:
    logs = "\n".join(f"--- {p.name}\n{p.log(2000)}" for p in [fed.superlink, *fed.nodes] if p)
    return f"rc={result.returncode} after {result.seconds:.0f}s\n{result.output[-6000:]}\n{logs}"


def device_config(
    key_dir: Path | None,
    *,
    fingerprint: str | None = None,
    run_dir: Path | None = None,
    **policy: object,
) -> dict[str, object]:
    """One device's node-config under the device policy of issue 9 (fedids/device/policy.py):
    its key directory, pinned key fingerprint, own run directory, and any policy key given
    with underscores (``allow_plain=True``, ``min_contributors=1``, ``max_change="auto"``).
    """
    config: dict[str, object] = {}
    if key_dir is not None:
        config["key-dir"] = str(key_dir)
    if fingerprint is not None:
        config["expected-fingerprint"] = fingerprint
    if run_dir is not None:
        config["run-dir"] = str(run_dir)
    config.update({k.replace("_", "-"): v for k, v in policy.items()})
    return config
