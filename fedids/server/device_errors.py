"""One line per device failure, for logs, records and the run's error.

Flower hands the ServerApp a device's failure as an exception (a ClientApp exception
wrapped in "Message contains an Error (reason: ...)"), or as a (proxy, result) pair whose
status is not OK. Users need the device and the sentence that says what went wrong.
"""

from __future__ import annotations

import re
from typing import Any


def describe_failure(failure: Any) -> str:
    """One line naming the device and what went wrong."""
    if isinstance(failure, tuple) and len(failure) == 2:
        proxy, res = failure
        cid = getattr(proxy, "cid", "?")
        if isinstance(res, BaseException):
            return f"device {cid}: {first_line(res)}"
        status = getattr(res, "status", None)
        return f"device {cid}: {getattr(status, 'message', 'returned an error status')}"
    if isinstance(failure, BaseException):
        return f"a device: {first_line(failure)}"
    return f"a device: {failure!r}"


def first_line(exc: BaseException) -> str:
    """The sentence that says what went wrong (Flower wraps a device's exception text in
    "Message contains an Error (reason: ...). It originated during client-side ...")."""
    text = str(exc).strip() or exc.__class__.__name__
    if "(reason: " in text:
        text = text.split("(reason: ", 1)[1]
        text = text.split("). It originated during", 1)[0]
    # a deployed ClientApp's exception arrives as "<class 'pkg.Error'>:<'message'>"
    match = re.search(r"<class '[\w.]+'>:<['\"](.*)['\"]>", text, flags=re.S)
    if match:
        text = match.group(1)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):  # a traceback ends with the exception's own line
        if not ln.startswith(("File ", "Traceback", "^", "~")):
            return ln[:500]
    return exc.__class__.__name__
