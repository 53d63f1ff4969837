"""Failures: one line on the console, the traceback in <run>/error.log, metrics.json "failed"."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest
from flwr.common import Code, Context, FitRes, Message, Parameters, RecordDict, Status

from fedids.artifacts import RunRecorder
from fedids.config import ConfigError
from fedids.data.loaders import DataError
from fedids.failures import (
    ConsoleFilter,
    FailureGuard,
    FedidsError,
    describe_failure,
    device_guard,
    explain,
    install_console_filter,
    mark_failed,
    record_failure,
    report_device_failures,
    server_guard,
)

FLWR = logging.getLogger("flwr")


@pytest.fixture
def console():
    """What Flower's console would show: a handler on the ``flwr`` logger, after filters."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    FLWR.addHandler(handler)
    try:
        yield stream
    finally:
        FLWR.removeHandler(handler)
        for f in [f for f in FLWR.filters if isinstance(f, ConsoleFilter)]:
            FLWR.removeFilter(f)


@pytest.fixture
def task_identity():
    """Flower needs a task identity to build messages outside its runtimes."""
    from flwr.supercore.task_identity import TaskIdentity

    saved = (TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 1
    yield
    TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id = saved


def _raised(exc: Exception) -> Exception:
    """``exc`` with a traceback, as Flower would catch it."""
    try:
        raise exc
    except Exception as caught:  # noqa: BLE001
        return caught


def _recorder(run_path: Path) -> RunRecorder:
    rec = RunRecorder(run_path, {"seed": 1}, header={"run_name": run_path.name, "mode": "plain"})
    rec.add_round({"round": 1, "accuracy": 0.5})
    return rec


def test_record_failure_keeps_rounds_and_writes_the_traceback(tmp_path):
    run = tmp_path / "run"
    _recorder(run)
    try:
        try:
            raise KeyError("inner")
        except KeyError as inner:
            raise DataError("/data/f.csv: column 'x' must be numeric") from inner
    except DataError as exc:
        shown = record_failure(run, exc)
    doc = json.loads((run / "metrics.json").read_text())
    assert doc["status"] == "failed"
    assert doc["error"] == "/data/f.csv: column 'x' must be numeric"
    assert doc["rounds"] == [{"round": 1, "accuracy": 0.5}] and doc["mode"] == "plain"
    log = (run / "error.log").read_text()
    assert "Traceback" in log and "KeyError: 'inner'" in log and "DataError" in log
    assert shown == (
        f"fedids run failed: /data/f.csv: column 'x' must be numeric (traceback: {run}/error.log)"
    )


def test_fresh_record_replaces_an_earlier_run_of_the_same_name(tmp_path):
    run = tmp_path / "run"
    _recorder(run).flush(status="completed")
    mark_failed(run, "run-config mode must be one of paillier, plain, got 'foo'", fresh=True)
    doc = json.loads((run / "metrics.json").read_text())
    assert doc == {
        "run_name": "run",
        "rounds": [],
        "status": "failed",
        "error": "run-config mode must be one of paillier, plain, got 'foo'",
    }


def test_explain_finds_the_known_error_in_the_chain():
    try:
        try:
            raise ConfigError("train.lr must be a number, got 'abc'")
        except ConfigError as exc:
            raise RuntimeError("wrapped\nover lines") from exc
    except RuntimeError as outer:
        assert explain(outer) == ("train.lr must be a number, got 'abc'", True)
    assert explain(ZeroDivisionError("division by zero")) == (
        "ZeroDivisionError: division by zero",
        False,
    )
    assert FedidsError("two\n  lines").line == "two lines"


def test_known_failure_logged_by_flower_becomes_one_line(tmp_path, console):
    run = tmp_path / "run"
    _recorder(run)
    install_console_filter(run_path=run)
    exc = _raised(DataError("/d.csv: unknown value(s) in label column 'label': 'weird' (1 rows)"))
    # exactly what flwr-simulation / flwr-serverapp do when the ServerApp dies
    FLWR.error("%s raised an exception", "Simulation", exc_info=exc)
    FLWR.error("Exit Code: 700\nAn unhandled exception occurred.\n\nFor more information: <x>")
    out = console.getvalue()
    assert "Traceback" not in out
    assert out.splitlines() == [
        "ERROR: fedids run failed: /d.csv: unknown value(s) in label column 'label': 'weird' "
        f"(1 rows) (traceback: {run}/error.log)",
        "ERROR: Exit Code: 700 (the run failed: see above)",
    ]
    doc = json.loads((run / "metrics.json").read_text())
    assert doc["status"] == "failed" and doc["error"].startswith("/d.csv: unknown value(s)")
    assert "Traceback" in (run / "error.log").read_text()


def test_unknown_failure_keeps_its_traceback_and_is_recorded(tmp_path, console):
    run = tmp_path / "run"
    _recorder(run)
    install_console_filter(run_path=run)
    FLWR.error("%s raised an exception", "ServerApp", exc_info=_raised(ZeroDivisionError("x")))
    FLWR.error("Exit Code: 700\nAn unhandled exception occurred.")
    out = console.getvalue()
    assert "Traceback" in out and "ZeroDivisionError: x" in out
    assert "An unhandled exception occurred." in out  # not cut: nothing was explained
    doc = json.loads((run / "metrics.json").read_text())
    assert doc["status"] == "failed" and doc["error"] == "ZeroDivisionError: x"


def test_guard_shows_the_line_at_once_and_flowers_record_is_dropped(tmp_path, console):
    run_config = {"run-dir": str(tmp_path / "runs"), "run-name": "probe", "mode": "foo"}
    guard = server_guard(run_config, run_id=7)
    with pytest.raises(ConfigError) as err:
        with guard:
            raise ConfigError("run-config mode must be one of paillier, plain, got 'foo'")
    FLWR.error("%s raised an exception", "Simulation", exc_info=err.value)
    out = console.getvalue().splitlines()
    assert len(out) == 1 and "run-config mode must be one of paillier, plain" in out[0]
    run = tmp_path / "runs" / "probe"  # where run-config said the run would be
    assert json.loads((run / "metrics.json").read_text())["status"] == "failed"
    assert str(run / "error.log") in out[0]


def test_guard_records_under_the_run_path_once_known(tmp_path, console):
    guard = server_guard({}, run_id=7)
    run = tmp_path / "run"
    _recorder(run)
    with pytest.raises(FedidsError):
        with guard:
            guard.set_run_path(run)
            raise FedidsError("federation.min_fit_clients=3 but the federation has only 2")
    doc = json.loads((run / "metrics.json").read_text())
    assert doc["error"].startswith("federation.min_fit_clients=3") and doc["rounds"]


def test_plain_guard_leaves_unknown_errors_to_the_console(tmp_path, console):
    with pytest.raises(ZeroDivisionError):
        with FailureGuard(lambda: tmp_path / "run"):
            raise ZeroDivisionError("bug")
    assert console.getvalue() == ""  # Flower will log it, traceback and all
    doc = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert doc["status"] == "failed" and doc["error"] == "ZeroDivisionError: bug"


def _ctx(node_config=None, run_config=None) -> Context:
    return Context(
        run_id=1,
        node_id=7,
        node_config=node_config if node_config is not None else {"partition-id": 0},
        state=RecordDict(),
        run_config=run_config or {},
    )


def test_device_guard_turns_a_known_error_into_a_reply_naming_the_device(task_identity, tmp_path):
    """The real ClientApp: a device whose file is missing answers with one line."""
    from fedids.client_app import app

    message = Message(RecordDict(), dst_node_id=7, message_type="train")
    bad = tmp_path / "nope.csv"
    run_config = {"hydra-overrides": f"dataset=csv dataset.path={bad} dataset.label_column=label"}
    reply = app(message, _ctx({"partition-id": 1, "num-partitions": 2}, run_config))
    assert reply.has_error()
    assert reply.error.reason == f"device 7 (partition-id 1): flow table not found: {bad}"
    reply = app(message, _ctx({"partition-id": 1, "num-partitions": 2}, {"mode": "foo"}))
    assert reply.error.reason.startswith("device 7 (partition-id 1): run-config mode must be")


def test_device_guard_lets_bugs_through(task_identity):
    message = Message(RecordDict(), dst_node_id=7, message_type="train")

    def buggy(msg, ctx):
        raise ZeroDivisionError("bug")

    with pytest.raises(ZeroDivisionError):
        device_guard(message, _ctx(), buggy)


def _flower_error(reason: str) -> ValueError:
    """The exception Flower 1.42's GridClientProxy raises for an error reply."""
    return ValueError(
        f"Message contains an Error (reason: {reason}). "
        "It originated during client-side execution of a message."
    )


def test_describe_failure_names_the_device():
    line = "device 7 (partition-id 1): /d.csv: column 'b' must be numeric (first on line 52: 'x')"
    assert describe_failure(_flower_error(line)) == line
    assert explain(_flower_error(line)) == (line, True)
    ray = (
        "<class 'ray.exceptions.RayTaskError(ClientAppException)'>:<'ray::ClientAppActor.run()\n"
        "  File x\nflwr.clientapp.client_app.ClientAppException: \n"
        "Exception ClientAppException occurred. Message: division by zero'>"
    )
    assert describe_failure(_flower_error(ray)) == "a device (id unknown) raised: division by zero"
    deployed = "<class 'ZeroDivisionError'>:<'division by zero'>"
    assert describe_failure(_flower_error(deployed)) == (
        "a device (id unknown) raised ZeroDivisionError: division by zero"
    )
    assert "round_timeout" in describe_failure(ValueError("Expected one Message but got: 0"))

    class Proxy:
        cid = "42"

    res = FitRes(Status(Code.FIT_NOT_IMPLEMENTED, "no fit"), Parameters([], ""), 0, {})
    assert describe_failure((Proxy(), res)) == "device 42: status FIT_NOT_IMPLEMENTED: no fit"


def test_describe_failure_of_a_message_api_reply(task_identity):
    from flwr.app import Error

    request = Message(RecordDict(), dst_node_id=7, message_type="train")
    reply = Message(Error(code=2, reason="<class 'KeyError'>:<'x'>"), reply_to=request)
    assert (
        describe_failure(reply) == f"device {reply.metadata.src_node_id}: <class 'KeyError'>:<'x'>"
    )
    named = Message(Error(code=2, reason="device 7 (partition-id 0): bad"), reply_to=request)
    assert describe_failure(named) == "device 7 (partition-id 0): bad"


def test_device_failures_are_reported_one_line_each(console):
    lines = report_device_failures(
        3, "fit", [_flower_error("device 7: a"), _flower_error("device 9 (partition-id 1): b")]
    )
    assert lines == ["device 7: a", "device 9 (partition-id 1): b"]
    assert console.getvalue().splitlines() == [f"ERROR: round 3 fit: {line}" for line in lines]
