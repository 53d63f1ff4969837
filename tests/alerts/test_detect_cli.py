"""``fedids detect`` without Kafka: alerts to JSONL, clear errors for bad inputs."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import polars as pl
import pytest
from alerts_helpers import T0, FlowSpec, make_flows, window_of, write_csv

from fedids.alerts.detect import run_detect
from fedids.alerts.errors import AlertsInputError
from fedids.alerts.stix import alert_id_for, validate_bundle
from fedids.alerts.stix_extension import details
from fedids.cli import main

SPECS = [
    FlowSpec(0, n=200),
    FlowSpec(1, n=30),  # DoS 10.0.0.5 -> 10.0.0.9 in window T0
    FlowSpec(1, start=T0 + 400, n=4),  # same pair after > 5 windows of silence: new burst
    FlowSpec(2, src="10.0.0.66", dport=None, n=3),  # Reconn without a port
    FlowSpec(4, src="10.0.0.7", dst="10.0.0.10", proto=17, dport=20000, n=2),
]
EXPECTED = {
    alert_id_for("plc-7", "DoS", "10.0.0.5", "10.0.0.9", window_of(T0)): 30,
    alert_id_for("plc-7", "DoS", "10.0.0.5", "10.0.0.9", window_of(T0 + 400)): 4,
    alert_id_for("plc-7", "Reconn", "10.0.0.66", "10.0.0.9", window_of(T0)): 3,
    alert_id_for("plc-7", "Backdoor", "10.0.0.7", "10.0.0.10", window_of(T0)): 2,
}


@pytest.fixture
def flows_csv(tmp_path):
    return write_csv(make_flows(SPECS), tmp_path / "flows.csv")


def test_detect_writes_valid_alerts_with_expected_ids(model_path, flows_csv, tmp_path, capsys):
    out = tmp_path / "alerts.jsonl"
    rc = main(
        [
            "detect",
            "--model",
            str(model_path),
            "--input",
            str(flows_csv),
            "--device-name",
            "plc-7",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    lines = out.read_bytes().splitlines()
    counts = {}
    for line in lines:
        b = validate_bundle(line)
        sig = next(o for o in b.objects if o.type == "sighting")
        counts[b.id] = sig.count
    assert counts == EXPECTED
    text = capsys.readouterr().out
    assert "Backdoor  10.0.0.7 -> 10.0.0.10:20000/udp" in text
    assert "39 detection(s) -> 4 alert(s)" in text


def test_same_flows_give_the_same_ids(model_path, flows_csv):
    a = run_detect(model_path, flows_csv, device_name="plc-7", now=datetime(2030, 1, 1, tzinfo=UTC))
    b = run_detect(model_path, flows_csv, device_name="plc-7")
    assert a.alert_ids == b.alert_ids and set(a.alert_ids) == set(EXPECTED)


def test_bad_model_file_is_a_clear_error(flows_csv, tmp_path, capsys):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"this is not a model")
    rc = main(["detect", "--model", str(bad), "--input", str(flows_csv)])
    err = capsys.readouterr().err
    assert rc == 2 and str(bad) in err and "Traceback" not in err
    rc = main(["detect", "--model", str(tmp_path / "absent.pt"), "--input", str(flows_csv)])
    assert rc == 2 and "absent.pt" in capsys.readouterr().err


def test_missing_column_is_a_clear_error(model_path, tmp_path, capsys):
    csv = write_csv(make_flows(SPECS).drop("TotBytes"), tmp_path / "short.csv")
    rc = main(["detect", "--model", str(model_path), "--input", str(csv)])
    err = capsys.readouterr().err
    assert rc == 2 and "TotBytes" in err and str(csv) in err


def test_option_errors(model_path, flows_csv, capsys):
    assert (
        main(
            [
                "detect",
                "--model",
                str(model_path),
                "--input",
                str(flows_csv),
                "--kafka",
                "127.0.0.1:1",
            ]
        )
        == 2
    )
    assert "--topic" in capsys.readouterr().err
    assert main(["detect", "--model", str(model_path)]) == 2
    assert main(["detect", "--flush-only"]) == 2
    with pytest.raises(AlertsInputError, match="threshold"):
        run_detect(model_path, flows_csv, threshold=1.5)


def test_flows_without_addresses_or_times_still_alert(model_path, tmp_path):
    df = make_flows(SPECS).drop("SrcAddr", "DstAddr", "StartTime", "LastTime")
    csv = write_csv(df, tmp_path / "anon.csv")
    now = datetime(2023, 5, 1, 12, 0, 30, tzinfo=UTC)
    report = run_detect(model_path, csv, device_name="plc-7", now=now)
    classes = sorted(a.group.attack_class for a in report.alerts)
    assert classes == ["Backdoor", "DoS", "Reconn"]  # one window: detection time
    for a in report.alerts:
        b = validate_bundle(a.payload)
        ind = next(o for o in b.objects if o.type == "indicator")
        assert "src_ref" not in ind.pattern and details(ind)["flow_times"] == "detection"
        sig = next(o for o in b.objects if o.type == "sighting")
        assert sig.first_seen == now
    dos = next(a for a in report.alerts if a.group.attack_class == "DoS")
    assert dos.group.count == 34


def test_binary_model_reports_attack(binary_model_path, tmp_path):
    csv = write_csv(make_flows([FlowSpec(0, n=10), FlowSpec(1, n=3)]), tmp_path / "b.csv")
    report = run_detect(binary_model_path, csv, device_name="d")
    assert [a.group.attack_class for a in report.alerts] == ["attack"]
    ind = next(
        o for o in json.loads(report.alerts[0].payload)["objects"] if o["type"] == "indicator"
    )
    assert details(ind)["classification"] == "binary"


def test_dataframe_input_and_small_batches(model_path):
    df = make_flows(SPECS)
    a = run_detect(model_path, df, device_name="plc-7", batch_size=7)
    assert set(a.alert_ids) == set(EXPECTED) and a.flows == df.height


def test_hex_ports_are_read(model_path):
    df = make_flows([FlowSpec(1, n=2)]).with_columns(pl.lit("0x01f6").alias("Dport"))
    [alert] = run_detect(model_path, df, device_name="d").alerts
    assert alert.group.dst_ports == (502,)


def test_text_in_a_numeric_feature_column_is_an_error(model_path):
    # Proto is one of the model's features (IANA numbers in WUSTL). Protocol names are mapped
    # to their numbers as in training (tests/alerts/test_flows.py); other text is refused.
    df = make_flows([FlowSpec(1, proto="not-a-protocol", n=2)])
    with pytest.raises(AlertsInputError, match="Proto"):
        run_detect(model_path, df, device_name="d")


def test_stream_option_errors(model_path, flows_csv, capsys):
    assert (
        main(
            [
                "detect",
                "--model",
                str(model_path),
                "--input",
                str(flows_csv),
                "--input-topic",
                "flows",
            ]
        )
        == 2
    )
    assert "not both" in capsys.readouterr().err
    assert main(["detect", "--model", str(model_path), "--input-topic", "flows"]) == 2
    assert "--kafka" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "is not a file"),  # a directory
        ("", "the file is empty"),
        ("header", "no flow records"),  # a header and nothing else
    ],
)
def test_unusable_input_is_one_line_exit_2(model_path, tmp_path, capsys, content, expected):
    path = tmp_path / "flows"
    if content is None:
        path.mkdir()
    elif content == "header":
        path.write_text(",".join(make_flows([FlowSpec(1)]).columns) + "\n")
    else:
        path.write_text(content)
    rc = main(["detect", "--model", str(model_path), "--input", str(path), "--out", "x.jsonl"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and expected in err and str(path) in err
    assert "Traceback" not in err


def test_empty_dataframe_is_an_error(model_path):
    with pytest.raises(AlertsInputError, match="no flow records"):
        run_detect(model_path, make_flows([FlowSpec(1)]).clear(), device_name="d")


def test_a_burst_across_windows_is_one_alert(model_path):
    """A DoS that goes on for ten minutes is one alert whose count and last_seen grow."""
    specs = [FlowSpec(1, start=T0 + 20 * i, n=3) for i in range(30)]  # every 20 s, 10 min
    report = run_detect(model_path, make_flows(specs), device_name="plc-7")
    [alert] = report.alerts
    assert alert.alert_id == alert_id_for("plc-7", "DoS", "10.0.0.5", "10.0.0.9", window_of(T0))
    b = validate_bundle(alert.payload)
    sig = next(o for o in b.objects if o.type == "sighting")
    assert sig.count == 90
    assert sig.first_seen == datetime.fromtimestamp(T0, UTC)
    assert sig.last_seen == datetime.fromtimestamp(T0 + 580 + 0.02 + 0.5, UTC)
    # with --burst-gap 60 s, 20 s silences still do not split it; sparse flows would
    assert len(run_detect(model_path, make_flows(specs), burst_gap=60).alerts) == 1
    sparse = [FlowSpec(1, start=T0 + 200 * i) for i in range(4)]
    assert len(run_detect(model_path, make_flows(sparse), burst_gap=60).alerts) == 4
    assert len(run_detect(model_path, make_flows(sparse)).alerts) == 1
