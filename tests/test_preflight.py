"""Preflight: what the ServerApp refuses before round 1, each in one line naming the culprit."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from flwr.common import Context, RecordDict

from fedids.config import compose_config, to_plain
from fedids.failures import ConsoleFilter
from fedids.preflight import PreflightError, in_simulation, preflight

CLASSES = "dataset.classes=[normal,dos]"


def _csv(path: Path, rows: list[str], header: str = "a,b,label") -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _good_rows(n: int = 60) -> list[str]:
    return [f"{i},{i * 2},{'dos' if i % 3 == 0 else 'normal'}" for i in range(n)]


def _cfg(path: Path | str, *extra: str, **run_config) -> dict:
    overrides = f"dataset=csv dataset.path={path} dataset.label_column=label " + " ".join(extra)
    return to_plain(compose_config({"hydra-overrides": overrides, **run_config}))


def _refused(cfg: dict, **kwargs) -> str:
    with pytest.raises(PreflightError) as err:
        preflight(cfg, simulation=kwargs.pop("simulation", True), **kwargs)
    line = str(err.value)
    assert "\n" not in line
    return line


def test_a_good_file_passes(tmp_path):
    preflight(_cfg(_csv(tmp_path / "f.csv", _good_rows()), CLASSES), simulation=True)


def test_missing_file(tmp_path):
    line = _refused(_cfg(tmp_path / "nope.csv"))
    assert line == f"dataset.path: file not found: {tmp_path / 'nope.csv'}"


def test_missing_file_is_left_to_devices_outside_simulation(tmp_path):
    preflight(_cfg(tmp_path / "nope.csv"), simulation=False)


def test_directory(tmp_path):
    assert _refused(_cfg(tmp_path)) == f"dataset.path: {tmp_path} is not a file"


def test_header_only_and_one_row_name_the_file(tmp_path):
    header_only = _csv(tmp_path / "h.csv", [])
    assert _refused(_cfg(header_only, CLASSES)) == f"{header_only}: no records (only a header)"
    one = _csv(tmp_path / "one.csv", ["1,2,normal"])
    line = _refused(_cfg(one, CLASSES))
    assert line.startswith(f"{one}: cannot give each of 2 partitions at least 1 record(s)")


def test_label_column_missing(tmp_path):
    f = _csv(tmp_path / "f.csv", _good_rows(), header="a,b,Label")
    assert _refused(_cfg(f)) == (
        f"{f}: dataset.label_column 'label' is not a column (columns: a, b, Label)"
    )


def test_text_column_names_file_column_line_and_value(tmp_path):
    rows = _good_rows()
    rows[50] = "50,x,normal"
    f = _csv(tmp_path / "f.csv", rows)
    line = _refused(_cfg(f, CLASSES))
    assert line.startswith(f"{f}: column 'b' must be numeric")
    assert "line 52: 'x'" in line


def test_unknown_label(tmp_path):
    rows = _good_rows()
    rows[10] = "10,20,weird"
    f = _csv(tmp_path / "f.csv", rows)
    line = _refused(_cfg(f, CLASSES))
    assert line.startswith(f"{f}: unknown value(s) in label column 'label': 'weird' (1 rows)")


def test_benign_label_never_occurs(tmp_path):
    f = _csv(tmp_path / "f.csv", [f"{i},{i},{i % 2}" for i in range(40)])
    line = _refused(_cfg(f))
    assert line == (
        f"{f}: the benign label 'normal' (dataset.normal_label) never occurs; "
        "labels found: ['0', '1']"
    )
    preflight(_cfg(f, "dataset.normal_label=0"), simulation=True)  # the fix it points to


def test_partitions_need_training_records(tmp_path):
    f = _csv(tmp_path / "f.csv", _good_rows(8))
    line = _refused(_cfg(f, CLASSES, "partition=dirichlet"))  # min_records: 50
    assert line.startswith(f"{f}: cannot give each of 2 partitions at least 50 record(s)")
    assert "partition=dirichlet" in line
    f = _csv(tmp_path / "g.csv", _good_rows(4))
    preflight(_cfg(f, CLASSES), simulation=True)  # 2 devices by default: fine
    line = _refused(_cfg(f, CLASSES), num_devices=5)  # the federation's real size
    assert line.startswith(f"{f}: cannot give each of 5 partitions at least 1 record(s)")


def test_federation_size_against_known_devices(tmp_path):
    cfg = to_plain(compose_config({"hydra-overrides": "federation.min_available_clients=3"}))
    line = _refused(cfg, num_devices=2)
    assert line.startswith("federation.min_available_clients=3 but the federation has only 2")
    preflight(cfg, simulation=True)  # size unknown: nothing to compare


def test_synthetic_rows_against_devices():
    cfg = to_plain(compose_config({"hydra-overrides": "dataset.rows=1"}))
    assert _refused(cfg) == "dataset.rows=1 cannot give each of 2 devices a record"


def test_paillier_codec_that_could_overflow():
    cfg = to_plain(
        compose_config(
            {"mode": "paillier", "hydra-overrides": "mode.count_bits=52 mode.max_clients=1048576"}
        )
    )
    line = _refused(cfg)
    assert line.startswith("mode=paillier settings: Paillier codec could overflow: count slots")
    cfg = to_plain(compose_config({"mode": "paillier", "hydra-overrides": "mode.key_bits=1024"}))
    assert "mode.key_bits=1024" in _refused(cfg)


def test_not_in_simulation_here():
    assert not in_simulation()


@pytest.fixture
def flwr_console():
    """Lines the ``flwr`` logger would print (after the failure filter)."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    handler = Collect()
    flwr = logging.getLogger("flwr")
    flwr.addHandler(handler)
    yield lines
    flwr.removeHandler(handler)
    for f in [f for f in flwr.filters if isinstance(f, ConsoleFilter)]:
        flwr.removeFilter(f)


def _server_context(run_config: dict) -> Context:
    return Context(run_id=5, node_id=0, node_config={}, state=RecordDict(), run_config=run_config)


def test_server_fn_refuses_before_round_1_and_records(tmp_path, flwr_console):
    """The ServerApp's server_fn: preflight runs, the run dir says failed, one line shown."""
    from fedids.server_app import server_fn

    rows = _good_rows()
    rows[50] = "50,x,normal"
    f = _csv(tmp_path / "f.csv", rows)
    run_config = {
        "run-dir": str(tmp_path / "runs"),
        "run-name": "bad-data",
        "hydra-overrides": f"dataset=csv dataset.path={f} dataset.label_column=label {CLASSES}",
    }
    with pytest.raises(PreflightError):
        server_fn(_server_context(run_config))
    run = tmp_path / "runs" / "bad-data"
    doc = json.loads((run / "metrics.json").read_text())
    assert doc["status"] == "failed" and doc["error"].startswith(f"{f}: column 'b'")
    assert doc["dataset"] == "csv"  # the run's header is kept
    assert (run / "config.yaml").is_file() and "Traceback" in (run / "error.log").read_text()
    flwr_console[:] = [ln for ln in flwr_console if not ln.startswith("fedids run bad-data")]
    assert len(flwr_console) == 1 and flwr_console[0].startswith("fedids run failed: ")
    assert doc["error"] in flwr_console[0] and str(run / "error.log") in flwr_console[0]


def test_server_fn_config_error_is_recorded_where_run_config_points(tmp_path, flwr_console):
    from fedids.config import ConfigError
    from fedids.server_app import server_fn

    run_config = {"run-dir": str(tmp_path), "run-name": "r", "hydra-overrides": "train.lr=abc"}
    with pytest.raises(ConfigError):
        server_fn(_server_context(run_config))
    doc = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert doc["status"] == "failed" and doc["error"] == "train.lr must be a number, got 'abc'"
    log = tmp_path / "r" / "error.log"
    assert flwr_console == [
        f"fedids run failed: train.lr must be a number, got 'abc' (traceback: {log})"
    ]
