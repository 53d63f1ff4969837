"""A corrupt outbox never stops detection; ``fedids outbox check`` salvages what is readable.

Both corruptions reported in issue 10: a file that is not a database at all, and one
damaged page in the middle of a real outbox (found by its content, so the damage hits the
alerts table and not an index).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from alerts_helpers import FlowSpec, make_flows, write_csv

from fedids.alerts.broker import free_port
from fedids.alerts.outbox import DB_NAME, NewAlert, Outbox
from fedids.alerts.outbox_repair import check_file
from fedids.cli import main

N_ROWS = 120
PAGE = 4096


def fill(directory: Path, n: int = N_ROWS) -> dict[str, bytes]:
    """An outbox with ``n`` waiting alerts (~2 KB each) and ``n`` ledger entries."""
    payloads = {f"old--{i}": (f"MARK-{i:04d}-".encode() * 160)[:2000] for i in range(n)}
    with Outbox(directory) as box:
        box.add(NewAlert(k, "t", v, f"d{k}") for k, v in payloads.items())
        box.add(NewAlert(f"done--{i}", "t", b"x", "d") for i in range(n))
        box.mark_delivered([p.seq for p in box.pending() if p.alert_id.startswith("done--")])
        assert box.count() == n and box.delivered_count() == n
    return payloads


def damage_middle_page(db: Path, marker: bytes) -> int:
    """Overwrite the page holding ``marker`` (a leaf of the alerts table); its number."""
    data = bytearray(db.read_bytes())
    page = data.index(marker) // PAGE
    assert 0 < page < len(data) // PAGE - 1  # in the middle, not the header page
    data[page * PAGE : (page + 1) * PAGE] = b"\xa5" * PAGE
    db.write_bytes(bytes(data))
    return page


@pytest.fixture
def flows_csv(tmp_path: Path) -> Path:
    specs = [FlowSpec(0, n=50), FlowSpec(1, n=5), FlowSpec(2, src="10.0.0.66", n=3)]
    return write_csv(make_flows(specs), tmp_path / "flows.csv")


def detect(model: Path, csv: Path, box: Path, out: Path) -> int:
    return main(
        [
            "detect",
            "--model",
            str(model),
            "--input",
            str(csv),
            "--kafka",
            f"127.0.0.1:{free_port()}",  # no broker: the alerts wait in the fresh outbox
            "--topic",
            "alerts",
            "--outbox",
            str(box),
            "--out",
            str(out),
            "--delivery-timeout",
            "1",
            "-q",
        ]
    )


def moved_aside(directory: Path) -> Path:
    [old] = [p for p in directory.glob(DB_NAME + ".corrupt-*") if not p.name.endswith("-wal")]
    return old


def test_not_a_database_is_moved_aside_and_detection_goes_on(
    model_path, flows_csv, tmp_path, capsys
):
    box = tmp_path / "outbox"
    box.mkdir()
    (box / DB_NAME).write_bytes(b"this is not an SQLite file " * 200)
    out = tmp_path / "alerts.jsonl"
    assert detect(model_path, flows_csv, box, out) == 3  # alerts wait: no broker
    text = capsys.readouterr().out
    old = moved_aside(box)
    assert "was corrupt (file is not a database)" in text and f"moved aside to {old}" in text
    assert "nothing could be salvaged" in text
    assert len(out.read_bytes().splitlines()) == 2  # --out written
    with Outbox(box) as fresh:
        assert fresh.count() == 2 and fresh.repair_report is None


def test_damaged_page_detection_goes_on_and_check_salvages(model_path, flows_csv, tmp_path, capsys):
    box = tmp_path / "outbox"
    payloads = fill(box)
    damage_middle_page(box / DB_NAME, b"MARK-0060-")
    assert check_file(box / DB_NAME)  # quick_check sees the damage

    out = tmp_path / "alerts.jsonl"
    assert detect(model_path, flows_csv, box, out) == 3
    text = capsys.readouterr().out
    old = moved_aside(box)
    assert f"moved aside to {old}" in text and "a fresh outbox was started" in text
    assert len(out.read_bytes().splitlines()) == 2
    with Outbox(box) as fresh:
        rows = {p.alert_id: p.payload for p in fresh.pending()}
        ledger = fresh.delivered_count()
    salvaged = {k: v for k, v in rows.items() if k.startswith("old--")}
    assert N_ROWS - 5 <= len(salvaged) < N_ROWS  # the damaged page's rows, no more, are lost
    assert "old--60" not in salvaged
    assert all(payloads[k] == v for k, v in salvaged.items())  # nothing garbled got in
    assert ledger == N_ROWS  # the ledger (what prevents duplicates) survived
    assert len(rows) == len(salvaged) + 2  # + this run's two alerts


def test_outbox_check_reports_repairs_and_salvages(tmp_path, capsys):
    box = tmp_path / "outbox"
    fill(box)
    assert main(["outbox", "check", str(box)]) == 0
    text = capsys.readouterr().out
    assert "ok (every page checked)" in text
    assert f"{N_ROWS} alert(s) waiting (0 in doubt" in text and f"{N_ROWS} delivered" in text

    damage_middle_page(box / DB_NAME, b"MARK-0030-")
    assert main(["outbox", "check", str(box)]) == 1
    text = capsys.readouterr().out
    old = moved_aside(box)
    assert "was corrupt" in text and f"moved aside to {old}" in text
    n = int(text.split("salvaged ")[1].split(" waiting")[0])
    assert N_ROWS - 5 <= n < N_ROWS
    assert f"moved-aside copy: {old}" in text
    assert main(["outbox", "check", str(box)]) == 0  # the fresh one is sound
    capsys.readouterr()
    # salvaging the moved-aside copy again adds nothing new (rows already there win)
    assert main(["outbox", "check", str(box), "--salvage", str(old)]) == 0
    assert "salvaged 0 waiting alert(s) and 0 delivered-ledger entries" in capsys.readouterr().out


def test_outbox_check_input_errors(tmp_path, capsys):
    assert main(["outbox", "check", str(tmp_path / "absent")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert main(["outbox", "check", str(tmp_path)]) == 2
    assert "no outbox in" in capsys.readouterr().err


def test_unusable_outbox_directory_still_writes_out(model_path, flows_csv, tmp_path, capsys):
    not_a_dir = tmp_path / "outbox"
    not_a_dir.write_text("a file where the outbox directory should be")
    out = tmp_path / "alerts.jsonl"
    assert detect(model_path, flows_csv, not_a_dir, out) == 2
    text = capsys.readouterr().out
    assert "cannot open the outbox" in text and "nothing was sent to Kafka" in text
    assert len(out.read_bytes().splitlines()) == 2  # detection and --out went on
