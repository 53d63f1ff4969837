"""What the benchmark figures share: number handling, titles, value labels on bars.

The benchmark owners call the plot functions with the document they write as JSON; each
function's docstring defines the shapes it accepts. Unknown extra keys are ignored, missing
figures are shown as "n/a" (never invented), and a document flagged
``"synthetic_data": true`` says SYNTHETIC in the title.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from fedids.report.canvas import WARNING_COLOUR


def num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if np.isfinite(value) else None


def title(fig: Any, text: str, doc: Mapping[str, Any], note: str | Sequence[str] = "") -> None:
    """Figure title, grey note lines under it, and SYNTHETIC in red when the document says
    so. Leave 0.5 in + 0.25 in per line at the top of the figure for them."""
    fig.suptitle(text, fontsize=13, fontweight="bold", y=1 - 0.12 / fig.get_figheight())
    notes = [note] if isinstance(note, str) else list(note)
    lines = [(n, "0.3", "normal") for n in notes if n]
    if doc.get("synthetic_data"):
        lines.insert(0, ("SYNTHETIC DATA: generated records, not real traffic; not results on "
                         "real data", WARNING_COLOUR, "bold"))
    height = fig.get_figheight()
    for k, (line, colour, weight) in enumerate(lines):
        fig.text(0.5, 1 - (0.45 + 0.25 * k) / height, line, ha="center", va="top",
                 color=colour, fontweight=weight, fontsize=10.5)


def short_number(value: float) -> str:
    """3 significant figures at most, so neighbouring bar labels do not run into each other."""
    if value >= 10_000:
        return f"{value / 1000:,.0f}k"
    if value >= 1000:
        return f"{value / 1000:.1f}k"
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 1 else f"{value:.2g}"


def label_bars(ax: Any, bars: Any, values: Sequence[float | None],
               fmt: str | Callable[[float], str], rotate: bool = False) -> None:
    """Write each bar's value on top of it ("n/a" for a missing one: nothing invented)."""
    for bar, value in zip(bars, values, strict=True):
        text = "n/a" if value is None else fmt(value) if callable(fmt) else fmt.format(value)
        height = bar.get_height()
        ax.annotate(text, (bar.get_x() + bar.get_width() / 2, height if np.isfinite(height)
                           and height > 0 else ax.get_ylim()[0]),
                    xytext=(0, 2), textcoords="offset points", ha="center", va="bottom",
                    fontsize=8.5, rotation=90 if rotate else 0)
