"""Constants and small helpers shared by the deployment tests (importable, unlike conftest)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

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
