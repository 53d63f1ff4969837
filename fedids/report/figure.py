"""The run report figure: one run (``report.png`` of every run) or several overlaid.

Layout: macro-F1 (with the majority-class baseline), false-positive rate and per-class
recall on top; time split and upload bytes below, then one confusion matrix per run.
The title says which data the figures come from, SYNTHETIC in capitals when it is, and
any run's ``quality_warning`` is printed under it in red.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

from fedids.report import panels
from fedids.report.canvas import WARNING_COLOUR, MatplotlibMissing, new_figure, save_png, style
from fedids.report.runs import ReportError, RunData, load_run, run_labels

if TYPE_CHECKING:
    from matplotlib.figure import Figure

REPORT_FILE = "report.png"
#: confusion matrices drawn in a multi-run report (one per run, the first ones)
MAX_MATRICES = 4


def _title_lines(runs: list[RunData], labels: list[str]) -> tuple[str, list[str]]:
    """Main title, and the red lines under it (synthetic data, quality warnings, status)."""
    if len(runs) == 1:
        run = runs[0]
        title = (f"fedids run {run.name}: {run.mode} mode, {run.partition}, {run.aggregation}, "
                 f"{run.classification} classification, dataset {run.dataset}")
    else:
        datasets = sorted({r.dataset for r in runs})
        title = f"fedids report: {len(runs)} runs, dataset {', '.join(datasets)}"
    red = []
    synthetic = [lab for r, lab in zip(runs, labels, strict=True) if r.synthetic]
    if synthetic and len(synthetic) == len(runs):
        red.append("SYNTHETIC DATA: generated flows, not real traffic; these figures are not "
                   "results on real data")
    elif synthetic:
        red.append("SYNTHETIC DATA in: " + "; ".join(synthetic))
    for run, label in zip(runs, labels, strict=True):
        who = "" if len(runs) == 1 else f"{label}: "
        if run.quality_warning:
            red.append(f"Quality warning, {who}{run.quality_warning}")
        if run.status not in ("completed", "unknown"):
            red.append(f"{who}run status '{run.status}' after {len(run.rounds)} rounds")
    wrapped = [w for line in red for w in textwrap.wrap(line, 150)]
    return title, wrapped


def build_figure(runs: list[RunData]) -> Figure:
    """The report figure for ``runs`` (at least one, each with at least one round)."""
    if not runs:
        raise ReportError("no runs to report")
    labels = run_labels(runs)
    title, red = _title_lines(runs, labels)
    matrices = runs[:MAX_MATRICES]
    single = len(runs) == 1
    head = 0.55 + 0.22 * len(red)
    height = (9.0 if single else 14.0) + head
    fig = new_figure(18, height)
    body_top = 1 - head / height
    fig.suptitle(title, fontsize=13, fontweight="bold", y=1 - 0.18 / height)
    for k, line in enumerate(red):
        fig.text(0.5, 1 - (0.5 + 0.22 * k) / height, line, ha="center", va="top",
                 color=WARNING_COLOUR, fontsize=10.5, fontweight="bold")
    if single:
        grid = fig.add_gridspec(2, 3, top=body_top - 0.045, bottom=0.08, left=0.06, right=0.97,
                                hspace=0.38, wspace=0.32)
        top = [fig.add_subplot(grid[0, c]) for c in range(3)]
        bottom = [fig.add_subplot(grid[1, c]) for c in range(2)]
        cm_axes = [fig.add_subplot(grid[1, 2])]
    else:
        grid = fig.add_gridspec(3, 1, top=body_top - 0.03, bottom=0.06, left=0.065,
                                right=0.97, hspace=0.42)
        row = [grid[k].subgridspec(1, n, wspace=w) for k, n, w in
               ((0, 3, 0.3), (1, 2, 0.2), (2, len(matrices), 0.45))]
        top = [fig.add_subplot(row[0][c]) for c in range(3)]
        bottom = [fig.add_subplot(row[1][c]) for c in range(2)]
        cm_axes = [fig.add_subplot(row[2][c]) for c in range(len(matrices))]
    panels.macro_f1(top[0], runs, labels)
    panels.false_positive_rate(top[1], runs, labels)
    panels.per_class_recall(top[2], runs, labels)
    panels.time_split(bottom[0], runs, labels)
    panels.upload_bytes(bottom[1], runs, labels)
    for k, (ax, run, label) in enumerate(zip(cm_axes, matrices, labels, strict=False)):
        panels.confusion(ax, run, label, fig, first=k == 0)
    if len(runs) > MAX_MATRICES:
        fig.text(0.5, 0.01, f"confusion matrices of the first {MAX_MATRICES} runs only",
                 ha="center", fontsize=9, color="0.3")
    return fig


def render_png(runs: list[RunData], dpi: int = 100) -> bytes:
    from fedids.report.canvas import png_bytes

    with style():
        return png_bytes(build_figure(runs), dpi=dpi)


def write_run_report(run_path: str | Path) -> Path | None:
    """Draw ``report.png`` beside ``run_path/metrics.json``; what every run calls at its end.

    Returns the PNG's path, or None (after ONE line on stderr) when matplotlib is not
    installed or the run recorded no round. A run's results are already in metrics.json,
    so nothing here is worth failing a finished run for: a file that cannot be written is
    reported in one line too. Takes about 0.5 s (see the README's figures).
    """
    run_path = Path(run_path)
    try:
        run = load_run(run_path)
        if not run.rounds:
            print(f"fedids: {run_path / REPORT_FILE} not drawn: no completed round",
                  file=sys.stderr)
            return None
        with style():
            fig = build_figure([run])
            return save_png(fig, run_path / REPORT_FILE)
    except MatplotlibMissing as exc:
        print(f"fedids: {REPORT_FILE} skipped: {exc}", file=sys.stderr)
        return None
    except (ReportError, OSError) as exc:
        print(f"fedids: {run_path / REPORT_FILE} not written: {exc}", file=sys.stderr)
        return None
