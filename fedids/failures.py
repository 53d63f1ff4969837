"""Failures are loud, short and clean: one line on the console, the traceback in a file.

A run that cannot go on must say why in ONE line naming the key, file, column, value or
device, and must not look like success. This module is the mechanism:

* :class:`FedidsError` and the other *known* error types (:data:`KNOWN_ERRORS`: config,
  data, partition, codec, key-file errors...) carry a message that is the whole story.
  Anything else is a bug, whose traceback the console keeps.
* :func:`record_failure` writes the full traceback to ``<run>/error.log`` and marks
  ``<run>/metrics.json`` ``"status": "failed"`` with ``"error": <the line>`` (atomically,
  keeping the rounds already recorded).
* :class:`ConsoleFilter`, installed on Flower's ``flwr`` logger in the process that runs the
  ServerApp (``flwr-simulation`` in simulation, ``flwr-serverapp`` in deployment), turns the
  record Flower logs with ``exc_info`` when the ServerApp dies ("Simulation raised an
  exception" / "ServerApp raised an exception") into that one line, after recording it.
  Unknown exceptions are recorded too but pass through unchanged.
* :func:`device_guard` is a ClientApp mod: a known error on a device becomes an error reply
  whose reason is ``device <node id> (partition-id P): <line>``, so neither the Ray actor
  (simulation) nor ``flwr-clientapp`` (deployment) prints a traceback, and the server can
  say which device failed and why (:func:`describe_failure`).

This module imports no flwr at import time (the mod imports it when called), so the
configuration and data layers can raise :class:`FedidsError` without pulling Flower in.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import re
import traceback
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from fedids.artifacts import atomic_write_text, make_run_name

ERROR_LOG = "error.log"

#: Error types whose message is one complete line a user can act on (module.qualname).
#: Subclasses count too. Add a type here when its messages name what is wrong.
KNOWN_ERRORS: set[str] = {
    "fedids.failures.FedidsError",
    "fedids.data.loaders.DataError",
    "fedids.data.partition.PartitionError",
    "fedids.crypto.codec.CodecConfigError",
    "fedids.crypto.keys.KeyFileError",
    "fedids.crypto.wire.WireFormatError",
    "fedids.eaas.client.EaaSError",
    "fedids.model.ModelFileError",
    "strategies.fedids_base.AggregationError",
    "fedids.protocol.ProtocolError",
    "fedids.device.policy.PolicyError",
    "fedids.data.spec.SpecError",
    "fedids.data.stats.StatsError",
    "fedids.data.encoder.EncoderError",
    # the environment, not the code: the message names the path
    "builtins.FileNotFoundError",
    "builtins.IsADirectoryError",
    "builtins.NotADirectoryError",
    "builtins.PermissionError",
}

#: Attribute set on an exception once it has been recorded (value: the console line).
_RECORDED = "_fedids_console_line"
#: Attribute set once its line has been shown on the console (Flower's record is dropped).
_SHOWN = "_fedids_shown"

log = logging.getLogger("fedids.failures")


class FedidsError(Exception):
    """An error whose message is ONE line that names the key, file, column, value or device."""

    def __init__(self, line: str) -> None:
        super().__init__(collapse(line))

    @property
    def line(self) -> str:
        return str(self)


class RunStopped(FedidsError, RuntimeError):
    """The run cannot go on (too few devices answered or connected); the line says why."""


def collapse(text: str) -> str:
    """Any text as one line (newlines and runs of blanks become one space)."""
    return " ".join(str(text).split())


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def is_known(exc: BaseException) -> bool:
    """Whether ``exc`` is of a type whose message says everything (see KNOWN_ERRORS)."""
    return any(_qualname(c) in KNOWN_ERRORS for c in type(exc).__mro__)


def _chain(exc: BaseException) -> Iterable[BaseException]:
    seen: set[int] = set()
    node: BaseException | None = exc
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        yield node
        node = node.__cause__ or (None if node.__suppress_context__ else node.__context__)


def explain(exc: BaseException) -> tuple[str, bool]:
    """``(one line, known)`` for any exception.

    Known: a known error anywhere in the cause chain (the innermost one named by the
    outermost that is known), or a device's error reply (:func:`device_failure_line`).
    """
    for node in _chain(exc):
        device = device_failure_line(node)
        if device is not None:
            return device, True
        if is_known(node):
            return collapse(str(node)) or type(node).__name__, True
    text = collapse(str(exc))
    return (f"{type(exc).__name__}: {text}" if text else type(exc).__name__), False


# --- recording ------------------------------------------------------------------------


def write_error_log(run_path: Path, exc: BaseException) -> Path | None:
    """Append the full traceback of ``exc`` to ``<run>/error.log``; None if it cannot."""
    path = run_path / ERROR_LOG
    try:
        run_path.mkdir(parents=True, exist_ok=True)
        stamp = _dt.datetime.now().isoformat(timespec="seconds")
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(f"=== {stamp} run failed\n{text}\n")
    except OSError as err:
        log.warning("could not write %s: %s", path, err)
        return None
    return path


def mark_failed(run_path: Path, line: str, *, fresh: bool = False) -> bool:
    """Set ``"status": "failed"`` and ``"error": line`` in ``<run>/metrics.json`` atomically.

    Rounds already recorded are kept. ``fresh``: the file (if any) belongs to an earlier run
    of the same name, so start a new record instead of amending it. Returns False if the
    file cannot be written (the console line still says what failed).
    """
    path = run_path / "metrics.json"
    doc: dict[str, Any] = {"run_name": run_path.name, "rounds": []}
    if not fresh and path.is_file():
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(loaded, dict):
                doc = loaded
        except (OSError, ValueError):
            pass  # unreadable: replaced by a minimal record rather than left "running"
    doc["status"] = "failed"
    doc["error"] = line
    try:
        atomic_write_text(path, json.dumps(doc, indent=2))
    except OSError as err:
        log.warning("could not write %s: %s", path, err)
        return False
    return True


def console_line(line: str, error_log: Path | None) -> str:
    """What the console shows for a failed run."""
    where = f" (traceback: {error_log})" if error_log is not None else ""
    return f"fedids run failed: {line}{where}"


def record_failure(run_path: Path | None, exc: BaseException, *, fresh: bool = False) -> str:
    """error.log + metrics.json for ``exc`` (once per exception); returns the console line."""
    done = getattr(exc, _RECORDED, None)
    if done is not None:
        return str(done)
    line, _ = explain(exc)
    error_log = None
    if run_path is not None:
        error_log = write_error_log(run_path, exc)
        mark_failed(run_path, line, fresh=fresh)
    shown = console_line(line, error_log)
    try:
        setattr(exc, _RECORDED, shown)
    except AttributeError:  # pragma: no cover - exceptions with __slots__
        pass
    return shown


def fallback_run_path(run_config: Mapping[str, Any], run_id: Any = None) -> Path | None:
    """Where a run that failed before its configuration composed records its failure.

    Only the plain run-config keys ``run-dir`` and ``run-name`` are used (the same names a
    successful run would use); None if they are not usable.
    """
    run_dir = run_config.get("run-dir") or "runs"
    name = run_config.get("run-name") or make_run_name(run_id)
    if not isinstance(run_dir, str) or not isinstance(name, str):
        return None
    try:
        return (Path(run_dir).expanduser() / name).resolve()
    except (OSError, RuntimeError):
        return None


class FailureGuard:
    """``with guard:`` records any exception escaping the block, then lets it propagate.

    Set ``run_path`` as soon as it is known; until then ``fallback`` (a callable returning
    a path or None) names where to record. Known errors are shown as one line by the
    :class:`ConsoleFilter`; the exception itself is re-raised unchanged for Flower.
    """

    def __init__(self, fallback: Callable[[], Path | None] | None = None) -> None:
        self.run_path: Path | None = None
        self.fallback = fallback

    def __enter__(self) -> FailureGuard:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if exc is None or not isinstance(exc, Exception):
            return False
        path, fresh = self.run_path, False
        if path is None and self.fallback is not None:
            path, fresh = self.fallback(), True
        shown = record_failure(path, exc, fresh=fresh)
        if explain(exc)[1]:
            # say it now: in simulation Flower logs the exception only once Ray has started
            logging.getLogger("flwr").error(shown)
            _mark_shown(exc)
        return False


def _mark_shown(exc: BaseException) -> None:
    try:
        setattr(exc, _SHOWN, True)
    except AttributeError:  # pragma: no cover - exceptions with __slots__
        pass


def server_guard(run_config: Mapping[str, Any], run_id: Any = None) -> ServerGuard:
    """What ``server_fn`` wraps its body in: console filter installed, failures recorded."""
    return ServerGuard(run_config, run_id)


class ServerGuard(FailureGuard):
    """A :class:`FailureGuard` that also keeps the process's :class:`ConsoleFilter` in step."""

    def __init__(self, run_config: Mapping[str, Any], run_id: Any = None) -> None:
        super().__init__(lambda: fallback_run_path(run_config, run_id))
        self.console = install_console_filter(fallback=self.fallback)
        self.console.run_path = None  # a new run in this process: nothing known yet

    def set_run_path(self, run_path: Path) -> None:
        """From now on, failures (here or in later rounds) are recorded under ``run_path``."""
        self.run_path = run_path
        self.console.run_path = run_path


# --- the console ----------------------------------------------------------------------


class ConsoleFilter(logging.Filter):
    """On Flower's ``flwr`` logger: a run-ending exception becomes one recorded line.

    Flower logs the exception that ended the ServerApp with ``exc_info`` at ERROR; that
    record (console, and the log stream ``flwr run --stream`` shows) is rewritten to the
    one line when the exception is known, after :func:`record_failure`. Unknown exceptions
    are recorded (status failed, error.log) and shown unchanged, traceback included.
    Flower's closing "Exit Code" message is cut to its first line after a known failure.
    """

    def __init__(self) -> None:
        super().__init__("fedids-failures")
        self.run_path: Path | None = None
        self.fallback: Callable[[], Path | None] | None = None
        self.shown_known = False

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            return self._filter(record)
        except Exception:  # a failing filter must never hide the original record
            return True

    def _filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None:
            if self.shown_known and isinstance(record.msg, str):
                if record.msg.startswith("Exit Code:"):
                    record.msg = record.msg.splitlines()[0] + " (the run failed: see above)"
                    record.args = ()
            return True
        if record.levelno < logging.ERROR or not isinstance(exc, Exception):
            return True
        path, fresh = self.run_path, False
        if path is None and self.fallback is not None:
            path, fresh = self.fallback(), True
        shown = record_failure(path, exc, fresh=fresh)
        if not explain(exc)[1]:
            return True
        self.shown_known = True
        if getattr(exc, _SHOWN, False):
            return False  # the guard already showed the line
        record.msg, record.args = shown, ()
        record.exc_info, record.exc_text = None, None
        _mark_shown(exc)
        return True


def install_console_filter(
    run_path: Path | None = None, fallback: Callable[[], Path | None] | None = None
) -> ConsoleFilter:
    """Install (once per process) or update the filter on the ``flwr`` logger."""
    flwr_logger = logging.getLogger("flwr")
    for f in flwr_logger.filters:
        if type(f).__name__ == ConsoleFilter.__name__ and hasattr(f, "run_path"):
            current = f
            break
    else:
        current = ConsoleFilter()
        flwr_logger.addFilter(current)
    if run_path is not None:
        current.run_path = run_path
    if fallback is not None:
        current.fallback = fallback
    return current  # type: ignore[return-value]


# --- devices --------------------------------------------------------------------------

_REASON = re.compile(r"Message contains an Error \(reason: (?P<reason>.*)\)\. It originated", re.S)
_DEVICE = re.compile(r"^device \S+")
_RAY_MESSAGE = re.compile(r"ClientAppException occurred\. Message: (?P<msg>[^\n]*)")
_DEPLOY_REASON = re.compile(r"^<class '(?P<cls>[\w.]+)'>:<'(?P<msg>.*)'>$", re.S)


def device_line(node_id: Any, node_config: Mapping[str, Any], exc: BaseException) -> str:
    """``device <node id> (partition-id P): <one line>``: who failed, and why."""
    line, known = explain(exc)
    pid = node_config.get("partition-id")
    who = f"device {node_id}" + (f" (partition-id {pid})" if pid is not None else "")
    return f"{who}: {line}" if known else f"{who}: {line} (a bug: traceback in the device log)"


def device_guard(message: Any, context: Any, call_next: Callable[[Any, Any], Any]) -> Any:
    """ClientApp mod: a known error becomes an error reply naming the device, no traceback.

    Unknown exceptions propagate unchanged, so Flower shows a bug's traceback as usual.
    """
    try:
        return call_next(message, context)
    except Exception as exc:
        if not explain(exc)[1]:
            raise
        from flwr.app import Error, Message
        from flwr.common.constant import ErrorCode

        line = device_line(context.node_id, context.node_config, exc)
        log.debug("device failure: %s", line, exc_info=exc)
        return Message(
            Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=line), reply_to=message
        )


def device_failure_line(exc: BaseException) -> str | None:
    """The device line inside Flower's "Message contains an Error" exception, if it is one."""
    m = _REASON.search(str(exc))
    if m is None:
        return None
    reason = m.group("reason").strip()
    if _DEVICE.match(reason):
        return collapse(reason)
    return None


def describe_failure(failure: Any) -> str:
    """One line for an entry of Flower's ``failures`` list (aggregate_fit/evaluate).

    Entries are either ``(ClientProxy, FitRes|EvaluateRes)`` with a non-OK status or an
    exception (Flower 1.42's legacy API gives the exception only, not the device). Devices
    running :func:`device_guard` name themselves; for other errors the device is not known
    to the server and the line says so. A Message API error reply (``grid.send_and_receive``)
    is accepted too: its ``src_node_id`` names the device.
    """
    if hasattr(failure, "has_error") and failure.has_error():  # a Message API reply
        reason = collapse(failure.error.reason)
        if _DEVICE.match(reason):
            return reason
        return f"device {failure.metadata.src_node_id}: {reason}"
    if isinstance(failure, tuple) and len(failure) == 2 and isinstance(failure[1], BaseException):
        proxy, exc = failure  # fedids' own call_clients keeps the device with its exception
        line = describe_failure(exc)
        if line.startswith("device "):
            return line
        for prefix in ("a device (id unknown) ", "a device "):
            if line.startswith(prefix):
                line = line[len(prefix) :]
                break
        return collapse(f"device {proxy.cid}: {line}")
    if isinstance(failure, tuple) and len(failure) == 2:
        proxy, res = failure
        status = getattr(res, "status", None)
        code = getattr(getattr(status, "code", None), "name", "?")
        return collapse(f"device {proxy.cid}: status {code}: {getattr(status, 'message', '')}")
    if not isinstance(failure, BaseException):
        return collapse(f"a device failed: {failure!r}")
    line = device_failure_line(failure)
    if line is not None:
        return line
    text = str(failure)
    if "Message Unavailable" in text:
        return "a device did not reply within federation.round_timeout (its message expired)"
    m = _REASON.search(text)
    if m is not None:
        reason = m.group("reason").strip()
        ray = _RAY_MESSAGE.search(reason)
        if ray is not None:
            msg = ray.group("msg").strip().removesuffix("'>")
            return collapse(f"a device (id unknown) raised: {msg}")
        dep = _DEPLOY_REASON.match(reason)
        if dep is not None:
            cls = dep.group("cls").rsplit(".", 1)[-1]
            return collapse(f"a device (id unknown) raised {cls}: {dep.group('msg')}")
        return collapse(f"a device (id unknown) failed: {reason}")
    if "Expected one Message but got: 0" in text or "Message Unavailable" in text:
        return "a device did not reply within federation.round_timeout (its message expired)"
    return collapse(f"a device failed: {type(failure).__name__}: {text}")


def report_device_failures(server_round: int, phase: str, failures: list[Any]) -> list[str]:
    """Log one line per failed device (on the ``flwr`` logger, so the console shows it).

    Returns the lines without the round prefix, for the run's own error line.
    """
    lines = [describe_failure(f) for f in failures]
    flwr_logger = logging.getLogger("flwr")
    for line in lines:
        flwr_logger.error("round %d %s: %s", server_round, phase, line)
    return lines
