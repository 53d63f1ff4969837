"""Plots people look at: the run report, and the benchmarks' figures.

Public API (matplotlib is imported only when a figure is drawn):

- :func:`write_run_report` - ``report.png`` beside a run's ``metrics.json``; a run may call
  :func:`preload` when it starts so that the matplotlib import is not paid at its end
- :func:`write_report` - ``fedids report``: several runs overlaid, PNG or HTML
- :func:`plot_real_data`, :func:`plot_stragglers`, :func:`plot_peers` - a PNG beside a
  benchmark's JSON (the JSON shapes are in each function's docstring)
"""

from fedids.report.canvas import MatplotlibMissing, preload
from fedids.report.figure import REPORT_FILE, build_figure, write_run_report
from fedids.report.output import write_report
from fedids.report.peers_plot import plot_peers
from fedids.report.real_data_plot import plot_real_data
from fedids.report.runs import ReportError, RunData, load_run
from fedids.report.stragglers_plot import plot_stragglers

__all__ = [
    "REPORT_FILE",
    "MatplotlibMissing",
    "ReportError",
    "RunData",
    "build_figure",
    "load_run",
    "plot_peers",
    "plot_real_data",
    "plot_stragglers",
    "preload",
    "write_report",
    "write_run_report",
]
