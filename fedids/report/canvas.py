"""matplotlib, imported only when a figure is drawn, with no GUI backend.

Figures are built on ``matplotlib.figure.Figure`` with the Agg canvas directly (never
pyplot): no global state, no display needed on a SuperLink host, and nothing leaks
between the figures a long-running process draws. A machine without matplotlib gets
:class:`MatplotlibMissing`, whose message is the one line telling how to get it.
"""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

INSTALL_HINT = "pip install matplotlib"

#: phase colours of the time split; runs are told apart by hatching there
PHASE_COLOURS = {
    "train": "#4C72B0",
    "encrypt": "#DD8452",
    "aggregate": "#55A868",
    "decrypt": "#C44E52",
}
SETUP_COLOUR = "#9E9E9E"
RUN_HATCHES = ("", "//", "..", "xx", "\\\\", "++")
WARNING_COLOUR = "#B00020"

STYLE = {
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.titleweight": "bold",
    # a fixed title position: the automatic one measures every tick label (slow)
    "axes.titley": 1.0,
    "axes.titlepad": 8.0,
    "axes.labelsize": 11,
    "legend.fontsize": 9.5,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


class MatplotlibMissing(ImportError):
    """matplotlib is not installed; ``str(exc)`` is the one line to show the user."""


def _matplotlib() -> Any:
    try:
        import matplotlib
        from matplotlib.figure import Figure  # noqa: F401  (fails early if broken)
    except ImportError:
        raise MatplotlibMissing(f"matplotlib is not installed: {INSTALL_HINT}") from None
    return matplotlib


def preload() -> threading.Thread:
    """Import matplotlib in a background thread (about 0.6 s of CPU), so a run that calls
    this when it starts pays only for drawing at its end. Missing matplotlib: no-op here,
    the one-line message comes when the report is drawn."""

    def _load() -> None:
        try:
            _matplotlib()
            from matplotlib.backends import backend_agg  # noqa: F401
        except ImportError:
            pass

    thread = threading.Thread(target=_load, name="fedids-report-preload", daemon=True)
    thread.start()
    return thread


def new_figure(width: float, height: float, **kwargs: Any) -> Figure:
    """A detached Agg figure (``width``/``height`` in inches); build it inside ``style()``."""
    _matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), **kwargs)
    FigureCanvasAgg(fig)
    return fig


def style() -> Any:
    """Context manager applying the report style: wrap the whole build and the save (rc
    settings are read when axes and artists are created, and when text is drawn)."""
    return _matplotlib().rc_context(STYLE)


def png_bytes(fig: Figure, dpi: int = 100) -> bytes:
    """PNG of ``fig``. zlib level 1: a third of the encode time of the default level for a
    file about 20 % larger, which matters for a figure drawn at the end of every run."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white",
                pil_kwargs={"compress_level": 1})
    return buf.getvalue()


def write_atomic(path: Path, data: bytes) -> Path:
    """Write via a temporary file in the same folder, then rename: readers never see half
    a file and an interrupted write keeps the previous one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def save_png(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    return write_atomic(Path(path), png_bytes(fig, dpi=dpi))


def no_data(ax: Any, what: str) -> None:
    """Mark a panel whose figures the run did not record (instead of an empty frame)."""
    ax.text(0.5, 0.5, f"{what}\nnot recorded in this run", ha="center", va="center",
            transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
