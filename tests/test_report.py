"""Run reports drawn from real (small, in-process) runs; benchmark plots from made-up documents.

The run directories come from ``fedids.sim.inprocess.run_experiment`` (real clients, real
strategies, real 2048-bit Paillier). The benchmark documents below are TEST DATA invented
for the plotting functions' input shapes; no figure in them is a measurement.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fedids.cli import main
from fedids.report import (
    ReportError,
    build_figure,
    load_run,
    plot_peers,
    plot_real_data,
    plot_stragglers,
    write_run_report,
)
from fedids.report.canvas import style
from fedids.report.runs import majority_macro_f1, run_labels
from tests.conftest import small_cfg

PANELS = (
    "Macro-F1 per round",
    "False-positive rate per round",
    "Per-class recall, last round",
    "Time split per round",
    "Bytes sent up per device per round",
    "Confusion matrix",
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A plain and a Paillier run (2 rounds, 6,000 synthetic rows), same seed."""
    from fedids.sim.inprocess import run_experiment

    root = tmp_path_factory.mktemp("runs")
    out = {}
    for mode in ("plain", "paillier"):
        run_experiment(small_cfg(mode=mode, **{"num-server-rounds": 2}), root / mode)
        out[mode] = root / mode
    return out


def copy_run(src: Path, dst: Path, edit=None) -> Path:
    """A copy of a run directory whose metrics.json went through ``edit(doc)``."""
    dst.mkdir(parents=True)
    shutil.copy(src / "config.yaml", dst / "config.yaml")
    doc = json.loads((src / "metrics.json").read_text())
    if edit:
        edit(doc)
    (dst / "metrics.json").write_text(json.dumps(doc))
    return dst


def titles(fig) -> list[str]:
    return [ax.get_title() for ax in fig.axes if ax.get_title()]


def figure_texts(fig) -> str:
    return "\n".join(t.get_text() for t in fig.texts) + "\n" + (fig._suptitle.get_text()
                                                                 if fig._suptitle else "")


def draw(runs_: list) -> object:
    with style():
        fig = build_figure(runs_)
        fig.canvas.draw()
    return fig


def assert_real_png(path: Path, min_size: tuple[int, int]) -> None:
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert img.size[0] >= min_size[0] and img.size[1] >= min_size[1], img.size
        pixels = np.asarray(img.convert("L"), dtype=float)
    # a figure, not a blank canvas: plenty of non-white pixels and real contrast
    assert (pixels < 200).mean() > 0.02
    assert pixels.std() > 20


def assert_axes_named(fig) -> None:
    """Every panel that shows data has both axes named (units are in the names)."""
    for ax in fig.axes:
        if not ax.get_title() or any("not recorded" in t.get_text() for t in ax.texts):
            continue
        assert ax.get_xlabel(), f"panel {ax.get_title()!r} has no x-axis label"
        assert ax.get_ylabel() or ax.get_yticklabels(), f"panel {ax.get_title()!r}: no y label"


def test_write_run_report_draws_every_panel(runs):
    path = write_run_report(runs["paillier"])
    assert path == runs["paillier"] / "report.png"
    assert_real_png(path, (1500, 800))
    fig = draw([load_run(runs["paillier"])])
    for panel in PANELS:
        assert any(t.startswith(panel) for t in titles(fig)), (panel, titles(fig))
    assert "SYNTHETIC DATA" in figure_texts(fig)
    assert "paillier mode" in fig._suptitle.get_text()
    assert_axes_named(fig)
    f1_axes = next(ax for ax in fig.axes if ax.get_title().startswith("Macro-F1"))
    labels = [t.get_text() for t in f1_axes.get_legend().get_texts()]
    assert labels == ["paillier, IID, sync", "majority-class baseline"]


def test_two_runs_overlaid_by_the_command(runs, tmp_path, capsys):
    out = tmp_path / "compare.png"
    assert main(["report", str(runs["plain"]), str(runs["paillier"]), "--out", str(out)]) == 0
    assert_real_png(out, (1500, 1300))
    printed = capsys.readouterr().out
    assert "plain, IID, sync" in printed and "paillier, IID, sync" in printed
    fig = draw([load_run(runs["plain"]), load_run(runs["paillier"])])
    for panel in PANELS:
        assert any(t.startswith(panel) for t in titles(fig)), panel
    matrices = [t for t in titles(fig) if t.startswith("Confusion matrix")]
    assert len(matrices) == 2 and "plain" in matrices[0] and "paillier" in matrices[1]
    for title in ("Macro-F1", "False-positive", "Bytes sent up"):
        ax = next(a for a in fig.axes if a.get_title().startswith(title))
        legend = " | ".join(t.get_text() for t in ax.get_legend().get_texts())
        assert "plain, IID, sync" in legend and "paillier, IID, sync" in legend, legend
    assert_axes_named(fig)


def test_html_report_is_self_contained(runs, tmp_path):
    out = tmp_path / "compare.html"
    assert main(["report", str(runs["plain"]), str(runs["paillier"]), "--out", str(out)]) == 0
    page = out.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)  # nothing to fetch
    image = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert image
    png = tmp_path / "embedded.png"
    png.write_bytes(base64.b64decode(image.group(1)))
    assert_real_png(png, (1500, 1300))
    assert "<table>" in page and page.count("<tr>") == 3  # header + two runs
    assert "SYNTHETIC" in page
    final = json.loads((runs["paillier"] / "metrics.json").read_text())["rounds"][-1]
    assert f"{final['macro_f1']:.4g}" in page


def test_missing_matplotlib_skips_with_one_line(runs, tmp_path, monkeypatch, capsys):
    run = copy_run(runs["plain"], tmp_path / "run")
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)  # "import matplotlib" now fails
    capsys.readouterr()
    assert write_run_report(run) is None
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "matplotlib is not installed" in err and "pip install matplotlib" in err
    assert not (run / "report.png").exists()
    assert main(["report", str(run), "--out", str(tmp_path / "r.png")]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "pip install matplotlib" in err


def test_preload_imports_matplotlib_in_the_background_or_does_nothing(monkeypatch):
    import threading

    from fedids.report import preload

    errors = []
    monkeypatch.setattr(threading, "excepthook", errors.append)
    preload().join(timeout=60)
    assert "matplotlib.backends.backend_agg" in sys.modules
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    preload().join(timeout=60)  # no matplotlib: no error, the report says it later
    assert errors == []


def test_recorded_baseline_and_quality_warning_are_shown(runs, tmp_path):
    def edit(doc):
        doc["quality_warning"] = "the final model is not clearly better than the baseline"
        doc["synthetic_data"] = False
        doc["dataset"] = "csv"
        doc["setup_seconds"] = 2.5  # the statistics passes before round 1
        for r in doc["rounds"]:
            r["baseline_macro_f1"] = 0.123

    run = load_run(copy_run(runs["plain"], tmp_path / "run", edit))
    fig = draw([run])
    text = figure_texts(fig)
    time_axes = next(ax for ax in fig.axes if ax.get_title().startswith("Time split"))
    assert [t.get_text() for t in time_axes.get_xticklabels()][0] == "setup"
    assert "Quality warning, the final model is not clearly better" in text
    assert "SYNTHETIC" not in text
    f1_axes = next(ax for ax in fig.axes if ax.get_title().startswith("Macro-F1"))
    dashed = [ln for ln in f1_axes.get_lines() if ln.get_linestyle() == "--"]
    assert [list(ln.get_ydata()) for ln in dashed] == [[0.123, 0.123]]


def test_baseline_derived_from_the_confusion_matrix_when_not_recorded():
    # true classes: 6 normal, 3 DoS, 1 Reconn -> always "normal": precision 0.6, recall 1
    cm = [[5, 1, 0], [1, 2, 0], [0, 1, 0]]
    f1_normal = 2 * 0.6 * 1.0 / 1.6
    assert majority_macro_f1(cm) == pytest.approx(f1_normal / 3)
    assert majority_macro_f1([[0, 0], [0, 0]]) is None
    assert majority_macro_f1("garbage") is None


def test_missing_and_extra_fields_and_different_lengths(runs, tmp_path):
    """Future records (buffered: contributors, staleness; new protocol fields) and old or
    partial ones must not break the report; missing figures say so."""

    def buffered(doc):
        doc["aggregation"] = "buffered"
        for r in doc["rounds"]:
            r["contributors"] = [{"device": 1, "staleness": 0}, {"device": 3, "staleness": 2}]
            r["staleness_multipliers"] = [4, 2]
            r["upload_bytes_by_device"] = {"1": 1000, "3": 3000}
        doc["rounds"].append({"round": 3, "macro_f1": 0.5, "something_new": {"x": 1}})

    def stripped(doc):
        doc["rounds"] = doc["rounds"][:1]
        for r in doc["rounds"]:
            for key in list(r):
                if key.endswith("_seconds") or key.startswith("upload_"):
                    del r[key]
            del r["per_class"]

    a = load_run(copy_run(runs["paillier"], tmp_path / "buffered", buffered))
    b = load_run(copy_run(runs["plain"], tmp_path / "stripped", stripped))
    assert len(a.rounds) == 3 and len(b.rounds) == 1
    assert run_labels([a, b]) == ["paillier, IID, buffered", "plain, IID, sync"]
    assert a.upload_per_device()[1][0] == [1000.0, 3000.0]
    fig = draw([a, b])
    f1_axes = next(ax for ax in fig.axes if ax.get_title().startswith("Macro-F1"))
    assert f1_axes.get_xlabel() == "round (buffered runs: aggregation)"
    assert [len(ln.get_xdata()) for ln in f1_axes.get_lines()[:1]] == [3]

    fig = draw([b])  # a run that recorded neither times nor bytes nor per-class figures
    notes = [t.get_text() for ax in fig.axes for t in ax.texts if "not recorded" in t.get_text()]
    assert len(notes) == 3, notes


def test_wrong_types_in_records_do_not_break_the_figure(runs, tmp_path):
    """A hand-edited or foreign metrics.json: wrong types are "not recorded", not a crash."""
    junk = [None, "x", [], {}, [1, [2, 3]], True, {"a": 1}, [[1, 2], [3]], 1e308]

    def scramble(doc):
        for r in doc["rounds"]:
            for k, key in enumerate(sorted(r)):
                if key != "round":
                    r[key] = junk[k % len(junk)]

    run = load_run(copy_run(runs["paillier"], tmp_path / "junk", scramble))
    fig = draw([run, load_run(runs["plain"])])
    assert len([t for t in titles(fig) if t.startswith("Confusion matrix")]) == 2


def test_labels_tell_runs_apart(runs, tmp_path):
    def binary(doc):
        doc["classification"] = "binary"

    plain, paillier = load_run(runs["plain"]), load_run(runs["paillier"])
    other = load_run(copy_run(runs["plain"], tmp_path / "b" / "plain", binary))
    twin = load_run(copy_run(runs["plain"], tmp_path / "c" / "plain"))
    assert run_labels([plain, paillier]) == ["plain, IID, sync", "paillier, IID, sync"]
    assert run_labels([plain, other]) == ["plain, IID, sync, multi", "plain, IID, sync, binary"]
    # same settings and same run name: the folder tells them apart
    assert run_labels([twin, plain, paillier]) == [
        "plain, IID, sync (c/plain)", f"plain, IID, sync ({runs['plain'].parent.name}/plain)",
        "paillier, IID, sync"]
    assert run_labels([plain, plain]) == ["plain, IID, sync (#1)", "plain, IID, sync (#2)"]


def test_bad_run_directories_get_one_line_each(runs, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "metrics.json").write_text("{not json")
    out = tmp_path / "r.png"
    rc = main(["report", str(empty), str(broken), str(runs["plain"]), "--out", str(out)])
    assert rc == 0 and out.is_file()  # the good run is still reported
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2
    assert str(empty / "metrics.json") in err[0] and "no such file" in err[0]
    assert str(broken / "metrics.json") in err[1] and "not valid JSON" in err[1]
    assert main(["report", str(empty), "--out", str(out)]) == 1
    assert main(["report", str(runs["plain"]), "--out", str(tmp_path / "r.pdf")]) == 2
    assert ".png or .html" in capsys.readouterr().err


def test_run_without_rounds_writes_nothing(tmp_path, capsys):
    (tmp_path / "metrics.json").write_text(json.dumps({"run_name": "x", "rounds": []}))
    assert write_run_report(tmp_path) is None
    assert "no completed round" in capsys.readouterr().err
    assert not (tmp_path / "report.png").exists()


# ---- benchmark plots: TEST DATA below, invented to exercise the input shapes --------------

FAKE_REAL_DATA = {
    "synthetic_data": True,
    "results": [
        {"file": f, "classification": c, "method": m, "macro_f1": v}
        for f in ("a.csv", "b.csv")
        for c in ("binary", "multi")
        for m, v in (("majority", 0.3), ("random_forest", 0.9), ("fed_paillier_iid", 0.8),
                     ("fed_paillier_dirichlet", None), ("my_new_method", 0.5))
    ],
}

FAKE_STRAGGLERS = {
    "sync": {"curve": [[10.0 * i, 0.5 + 0.04 * i] for i in range(1, 11)],
             "time_to_target_s": 90.0, "final_macro_f1": 0.9, "aggregations": 10,
             "aggregations_with_slow_device": 10},
    "buffered": {"curve": [[4.0 * i, 0.5 + 0.02 * i, i % 2 == 0] for i in range(1, 21)],
                 "time_to_target_s": None, "final_macro_f1": 0.88, "aggregations": 20,
                 "aggregations_with_slow_device": 10},
    "devices": 4, "slow_factor": 4, "mode": "paillier",
}

FAKE_PEERS = {
    "clients": 10,
    "peers": [
        {"n_params": 5125, "schemes": {
            "packed_paillier": {"encrypt_seconds": 0.09, "decrypt_seconds": 0.08,
                                "server_seconds": 0.03, "upload_bytes": 30000,
                                "download_bytes": 30000, "max_error": 1e-4},
            "ckks": {"client_seconds": 0.005, "server_seconds": 0.008,
                     "upload_bytes": 470000}}},
        {"n_params": 100000, "schemes": {
            "packed_paillier": {"encrypt_seconds": 1.6, "decrypt_seconds": 1.7,
                                "server_seconds": 0.3, "upload_bytes": 576000}}},
    ],
}


def test_real_data_plot(tmp_path):
    out = plot_real_data(copy.deepcopy(FAKE_REAL_DATA), tmp_path / "real.png")
    assert_real_png(out, (1000, 800))
    # a bare list of records is accepted too
    plot_real_data(FAKE_REAL_DATA["results"][:5], tmp_path / "list.png")
    with pytest.raises(ReportError, match="results"):
        plot_real_data({"results": []}, tmp_path / "x.png")


def test_straggler_plot(tmp_path):
    out = plot_stragglers(copy.deepcopy(FAKE_STRAGGLERS), tmp_path / "stragglers.png")
    assert_real_png(out, (1500, 500))
    # the shape benchmarks/stragglers.py writes: settings under "setup", per-variant target,
    # baseline and setup time, a "comparison" object that is not a variant
    doc = copy.deepcopy(FAKE_STRAGGLERS)
    setup = {k: doc.pop(k) for k in ("devices", "slow_factor", "mode")}
    doc["setup"] = setup
    doc["comparison"] = {"time_to_target_ratio": None, "criteria": {}}
    for variant in ("sync", "buffered"):
        doc[variant].update(target_macro_f1=0.85, baseline_macro_f1=0.2, setup_seconds=40.0)
    assert_real_png(plot_stragglers(doc, tmp_path / "benchmark.png"), (1500, 500))
    with pytest.raises(ReportError, match="variant"):
        plot_stragglers({"devices": 4}, tmp_path / "x.png")


def test_peers_plot(tmp_path):
    out = plot_peers(copy.deepcopy(FAKE_PEERS), tmp_path / "peers.png")
    assert_real_png(out, (1500, 500))
    single = {"n_params": 5125, "peers": FAKE_PEERS["peers"][0]["schemes"]}
    assert plot_peers(single, tmp_path / "single.png").is_file()
    with pytest.raises(ReportError, match="peers"):
        plot_peers({}, tmp_path / "x.png")


def test_real_data_plot_reads_the_benchmarks_own_rows(tmp_path):
    from fedids.report.real_data_plot import _long_records

    rows = [{"file": "a.csv", "classification": "multi", "majority": 0.1, "forest": 0.9,
             "torch": 0.5, "references": {"x": 1},
             "federated": {"plain iid": {"macro_f1": 0.8},
                           "paillier dir": {"macro_f1": 0.1, "quality_warning": "learned nothing"},
                           "paillier iid": {"macro_f1": None, "error": "boom"}}}]
    long = {r["method"]: r for r in _long_records(rows)}
    assert set(long) == {"majority", "random_forest", "torch_central", "fed_plain_iid",
                         "fed_paillier_dirichlet", "fed_paillier_iid"}
    assert long["fed_paillier_dirichlet"]["quality_warning"] == "learned nothing"
    assert long["fed_paillier_iid"]["macro_f1"] is None
    assert_real_png(plot_real_data(rows, tmp_path / "rows.png"), (1000, 500))


def test_peers_plot_reads_the_bench_json(tmp_path):
    from fedids.report.peers_plot import _get, _peer_sets

    packed = {"encrypt_seconds": 3.4, "encrypt_seconds_per_client": 0.34,  # total vs per device
              "decrypt_seconds": 1.0, "aggregate_seconds": 0.1, "upload_bytes_per_client": 30096,
              "download_bytes_per_client": 30096, "max_abs_error": 3e-6}
    ckks = {"encrypt_seconds_per_client": 0.05, "decrypt_seconds": 0.03,
            "aggregate_seconds": 0.05, "upload_bytes_per_client": 470149,
            "download_bytes_per_client": 470162, "max_abs_error": 3e-8}
    doc = {"settings": {"clients": 2}, "peers": {"5125": {
        "settings": {"clients": 10}, "ckks": ckks, "packed": packed,
        "packed_client_over_ckks": 17.4, "breakeven_link_mbit_per_s": 5.2}}}
    [(label, group)] = _peer_sets(doc)
    assert label == "5,125 parameters"
    assert _get(group["packed"], "encrypt") == 0.34
    assert _get(group["ckks"], "server") == 0.05 and _get(group["ckks"], "up") == 470149
    assert_real_png(plot_peers(doc, tmp_path / "bench.png"), (1500, 500))
    with pytest.raises(ReportError, match="TenSEAL"):
        plot_peers({"peers": {}}, tmp_path / "none.png")
