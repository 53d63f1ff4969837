"""``fedids report`` output: the figure as a PNG, or a self-contained HTML page.

The HTML page embeds the PNG (base64) and the summary table, so it can be mailed or
attached to a ticket as one file with nothing to fetch.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from fedids.report.canvas import write_atomic
from fedids.report.figure import render_png
from fedids.report.runs import ReportError, RunData, number_text, summary_rows

FORMATS = (".png", ".html")

_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; } .warn { color: #b00020; font-weight: bold; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; } th { background: #f2f2f2; }
img { max-width: 100%; height: auto; border: 1px solid #ddd; }
"""


def _html_cell(value: Any) -> str:
    if value is None:
        return '<td class="num">n/a</td>'
    if isinstance(value, float):
        return f'<td class="num">{number_text(value)}</td>'
    if isinstance(value, int):
        return f'<td class="num">{value}</td>'
    return f"<td>{html.escape(str(value))}</td>"


def html_page(runs: list[RunData], png: bytes) -> str:
    rows = summary_rows(runs)
    keys = list(rows[0])
    table = "<table>\n<tr>" + "".join(f"<th>{html.escape(k)}</th>" for k in keys) + "</tr>\n"
    table += "".join("<tr>" + "".join(_html_cell(r[k]) for k in keys) + "</tr>\n" for r in rows)
    table += "</table>"
    notes = []
    if any(r.synthetic for r in runs):
        notes.append("Runs marked SYNTHETIC were trained and evaluated on generated flows, "
                     "not real traffic: their figures are not results on real data.")
    notes += [f"Quality warning ({row['run']}): {row['quality warning']}"
              for row in rows if row["quality warning"]]
    warn = "".join(f'<p class="warn">{html.escape(n)}</p>\n' for n in notes)
    names = ", ".join(r.name for r in runs)
    image = base64.b64encode(png).decode("ascii")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>fedids report: {html.escape(names)}</title>\n<style>{_CSS}</style>\n"
        "</head>\n<body>\n"
        f"<h1>fedids report: {html.escape(names)}</h1>\n{warn}"
        "<p>Quality figures come from the union of the devices' validation splits; the "
        "dashed lines are the macro-F1 of always predicting the majority class.</p>\n"
        f"<h2>Summary</h2>\n{table}\n<h2>Figures</h2>\n"
        f'<img alt="fedids report figure for {html.escape(names)}" '
        f'src="data:image/png;base64,{image}">\n</body>\n</html>\n'
    )


def write_report(runs: list[RunData], out: str | Path) -> Path:
    """Write the report of ``runs`` to ``out`` (``.png`` or ``.html``, by its suffix)."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        raise ReportError(f"--out {out}: the file name must end in .png or .html")
    usable = [r for r in runs if r.rounds]
    if not usable:
        raise ReportError("none of the runs has a completed round; nothing to plot")
    png = render_png(usable)
    data = png if suffix == ".png" else html_page(usable, png).encode("utf-8")
    return write_atomic(out, data)
