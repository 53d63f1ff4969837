"""The panels of a run report, one function per panel, each drawing onto a given axes.

Several runs share a panel (overlaid lines or grouped bars, one colour per run, legend
labels from :func:`fedids.report.runs.run_labels`); the confusion matrix has one panel
per run. A figure a run did not record shows "not recorded" instead of an empty frame.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fedids.report.canvas import PHASE_COLOURS, RUN_HATCHES, SETUP_COLOUR, no_data
from fedids.report.runs import TIME_PHASES, RunData


def _headroom(ax: Any, data_top: float, legend_rows: int) -> None:
    """Raise the y limit so a legend of ``legend_rows`` rows at the top hides no data."""
    share = min(0.6, 0.07 * legend_rows + 0.06)
    top = max(data_top, 1e-9) * 1.05 / (1 - share)
    if np.isfinite(top):  # absurd recorded values: leave matplotlib's own limits
        ax.set_ylim(0, top)


def run_colour(i: int) -> str:
    return f"C{i % 10}"


#: runs that reach the same figures (plain and Paillier with one seed) draw on top of each
#: other: each later run gets a smaller, different marker so the earlier one stays visible
_MARKERS = ("o", "s", "^", "D", "v", "P")


def _line_style(i: int, n: int) -> dict[str, Any]:
    if n == 1:
        return {"marker": "o", "markersize": 7, "linewidth": 2.0, "color": run_colour(0)}
    return {"marker": _MARKERS[i % len(_MARKERS)], "markersize": max(4.0, 11.0 - 3.0 * i),
            "linewidth": 3.5 if i == 0 else max(1.0, 1.8 - 0.2 * i), "color": run_colour(i)}


def _round_ticks(ax: Any, runs: list[RunData]) -> None:
    xs = sorted({x for run in runs for x in run.x()})
    if xs and len(xs) <= 20:
        ax.set_xticks(xs)
    buffered = {run.aggregation == "buffered" for run in runs}
    ax.set_xlabel("aggregation (buffered: each one is a round)" if buffered == {True}
                  else "round (buffered runs: aggregation)" if True in buffered else "round")


def macro_f1(ax: Any, runs: list[RunData], labels: list[str]) -> None:
    """Macro-F1 per round, with each run's majority-class baseline dashed beside it."""
    ax.set_title("Macro-F1 per round (validation splits)")
    drawn = baseline = False
    for i, (run, label) in enumerate(zip(runs, labels, strict=True)):
        xs, ys = run.series("macro_f1")
        if xs:
            ax.plot(xs, ys, label=label, **_line_style(i, len(runs)))
            drawn = True
        bx, by = run.baseline_series()
        if bx:
            ax.plot(bx, by, ls="--", lw=1.3, color=run_colour(i), alpha=0.85,
                    label="majority-class baseline" if len(runs) == 1 else None)
            baseline = True
    if not drawn:
        no_data(ax, "macro-F1")
        return
    if baseline and len(runs) > 1:
        ax.plot([], [], ls="--", lw=1.3, color="0.3",
                label="majority-class baseline (dashed, run's colour)")
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("macro-F1 (0-1, higher is better)")
    _round_ticks(ax, runs)
    ax.legend(loc="best")  # the baseline may sit low or high: avoid both


def false_positive_rate(ax: Any, runs: list[RunData], labels: list[str]) -> None:
    ax.set_title("False-positive rate per round")
    top = None
    for i, (run, label) in enumerate(zip(runs, labels, strict=True)):
        xs, ys = run.series("false_positive_rate")
        if xs:
            ax.plot(xs, [100 * y for y in ys], label=label, **_line_style(i, len(runs)))
            top = max(top or 0.0, 100 * max(ys))
    if top is None:
        no_data(ax, "false-positive rate")
        return
    # at least 0-1 %: a flat 0.09 % must not fill the panel as if it were large
    _headroom(ax, max(top, 1.0), len(runs))
    ax.set_ylabel("normal flows flagged as attack (%)")
    _round_ticks(ax, runs)
    ax.legend(loc="best")


def _per_class(record: dict[str, Any] | None) -> dict[str, Any]:
    value = (record or {}).get("per_class")
    return value if isinstance(value, dict) else {}


def per_class_recall(ax: Any, runs: list[RunData], labels: list[str]) -> None:
    """Recall of every class in each run's last round, as grouped horizontal bars."""
    ax.set_title("Per-class recall, last round")
    lasts = [run.last_with("per_class") for run in runs]
    classes: list[str] = []
    support: dict[str, set[int]] = {}
    for rec in lasts:
        for name, figures in _per_class(rec).items():
            if name not in classes:
                classes.append(name)
            n = figures.get("support") if isinstance(figures, dict) else None
            if isinstance(n, int) and not isinstance(n, bool):
                support.setdefault(name, set()).add(n)
    if not classes:
        no_data(ax, "per-class recall")
        return
    height = 0.8 / len(runs)
    pos = np.arange(len(classes))
    for i, (rec, label) in enumerate(zip(lasts, labels, strict=True)):
        per_class = _per_class(rec)
        figures = [per_class.get(c) if isinstance(per_class.get(c), dict) else {}
                   for c in classes]
        values = [f.get("recall") for f in figures]
        sizes = [f.get("support") for f in figures]
        ys = [p - 0.4 + height * (i + 0.5) for p in pos]
        shown = [(y, v) for y, v in zip(ys, values, strict=True) if isinstance(v, int | float)]
        if shown:
            ax.barh([y for y, _ in shown], [v for _, v in shown], height=height * 0.95,
                    color=run_colour(i), label=f"{label} (round {rec.get('round', '?')})")
        for y, v, n in zip(ys, values, sizes, strict=True):
            text = "no flows" if n == 0 else "n/a" if not isinstance(v, int | float) else f"{v:.2f}"
            ax.text(min(v or 0.0, 0.85) + 0.01 if isinstance(v, int | float) else 0.01, y, text,
                    va="center", fontsize=8 if len(runs) > 1 else 9,
                    color="white" if isinstance(v, int | float) and v > 0.85 else "black")
    ax.set_yticks(pos)
    single = len(runs) == 1
    # flows per class, when every run validated on the same number (same splits)
    ax.set_yticklabels([f"{c}\n(n={next(iter(support[c])):,})" if len(support.get(c, ())) == 1
                        else c for c in classes])
    # classes top to bottom; in multi-run reports, room below the last class for the legend
    ax.set_ylim(len(classes) - 0.5 + (0 if single else 0.55 * len(runs) + 0.2), -0.5)
    ax.set_xlim(0, 1.0)
    ax.set_xlabel("recall (share of the class's validation flows detected, 0-1)")
    ax.grid(axis="y", visible=False)
    if not single:
        ax.legend(loc="lower right")


def confusion(ax: Any, run: RunData, label: str, fig: Any, first: bool = True) -> None:
    """Last round's confusion matrix: colour = share of the true class, text = count."""
    rec = run.last_with("confusion_matrix")
    try:
        cm = np.asarray(rec["confusion_matrix"], dtype=float) if rec else np.zeros((0, 0))
    except (TypeError, ValueError, OverflowError):  # ragged or not numbers
        cm = np.zeros((0, 0))
    if cm.ndim != 2 or cm.size == 0 or cm.shape[0] != cm.shape[1]:
        ax.set_title(f"Confusion matrix ({label})")
        no_data(ax, "confusion matrix")
        return
    names = list(_per_class(rec))
    if len(names) != cm.shape[0]:
        names = [str(i) for i in range(cm.shape[0])]
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0) * 100
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=100, aspect="auto")
    small = cm.shape[0] > 6
    for (i, j), count in np.ndenumerate(cm):
        ax.text(j, i, f"{int(count):,}", ha="center", va="center",
                fontsize=7 if small else 8.5, color="white" if share[i, j] > 60 else "black")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=30, ha="right")
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names)
    ax.set_xlabel("predicted class")
    if first:
        ax.set_ylabel("true class")
    ax.grid(False)
    ax.set_title(f"Confusion matrix, round {rec.get('round', '?')}\n{label}")
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03)
    bar.set_label("share of the true class (%)")


def time_split(ax: Any, runs: list[RunData], labels: list[str]) -> None:
    """Stacked seconds per phase for every round; runs side by side, told apart by hatch.

    Train, encrypt and decrypt are the mean over devices; aggregate is the server's.
    The black tick is the round's wall-clock time (communication, evaluation and devices
    working one after the other make up the rest). A run that recorded ``setup_seconds``
    (the statistics passes before round 1) gets a grey "setup" bar at round 0.
    """
    ax.set_title("Time split per round")
    data = [run.time_split() for run in runs]
    if not any(xs for xs, _, _ in data):
        no_data(ax, "time split")
        return
    width = 0.8 / len(runs)
    top = 0.0
    for i, (xs, phases, wall) in enumerate(data):
        pos = np.asarray(xs, dtype=float) - 0.4 + width * (i + 0.5)
        bottom = np.zeros(len(xs))
        for phase, _ in TIME_PHASES:
            values = np.asarray(phases[phase])
            ax.bar(pos, values, width=width * 0.9, bottom=bottom, color=PHASE_COLOURS[phase],
                   hatch=RUN_HATCHES[i % len(RUN_HATCHES)], edgecolor="white", linewidth=0.5)
            bottom += values
        top = max([top, *bottom, *(w for w in wall if w is not None)])
        setup = _setup_seconds(runs[i])
        if setup is not None:
            ax.bar([-0.4 + width * (i + 0.5)], [setup], width=width * 0.9, color=SETUP_COLOUR,
                   hatch=RUN_HATCHES[i % len(RUN_HATCHES)], edgecolor="white", linewidth=0.5)
            top = max(top, setup)
        walls = [(p, w) for p, w in zip(pos, wall, strict=True) if w is not None]
        if walls:
            ax.scatter([p for p, _ in walls], [w for _, w in walls], marker="_", s=250,
                       color="black", zorder=3)
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=PHASE_COLOURS[p], label=f"{p} (per device)" if p != "aggregate"
                     else "aggregate (server)") for p, _ in TIME_PHASES]
    if len(runs) > 1:
        handles += [Patch(facecolor="white", edgecolor="0.3", hatch=RUN_HATCHES[i % 6] * 2,
                          label=label) for i, label in enumerate(labels)]
    if any(_setup_seconds(run) is not None for run in runs):
        handles.insert(0, Patch(facecolor=SETUP_COLOUR, label="setup before round 1"))
    from matplotlib.lines import Line2D

    handles.append(Line2D([], [], color="black", marker="_", ls="", markersize=14,
                          label="round wall-clock time"))
    columns = 3 if len(runs) > 1 else 2
    ax.legend(handles=handles, loc="upper left", ncols=columns)
    ax.set_ylabel("seconds")
    _headroom(ax, top, -(-len(handles) // columns))
    _round_ticks(ax, runs)
    if handles[0].get_label() == "setup before round 1":
        ticks = [0, *(t for t in ax.get_xticks() if t >= 1)]
        ax.set_xticks(ticks)
        ax.set_xticklabels(["setup", *(f"{t:g}" for t in ticks[1:])])
    ax.grid(axis="x", visible=False)


def _setup_seconds(run: RunData) -> float | None:
    value = run.header.get("setup_seconds")
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
        return None
    return float(value)


def upload_bytes(ax: Any, runs: list[RunData], labels: list[str]) -> None:
    """KB each device sent up per round: bar = mean over devices, whisker = min..max."""
    ax.set_title("Bytes sent up per device per round")
    data = [run.upload_per_device() for run in runs]
    if not any(xs for xs, _ in data):
        no_data(ax, "upload bytes")
        return
    width = 0.8 / len(runs)
    top = 0.0
    for i, ((xs, sizes), label) in enumerate(zip(data, labels, strict=True)):
        if not xs:
            continue
        kb = [np.asarray(s) / 1024 for s in sizes]
        mean = np.array([k.mean() for k in kb])
        err = np.array([[m - k.min() for m, k in zip(mean, kb, strict=True)],
                        [k.max() - m for m, k in zip(mean, kb, strict=True)]])
        pos = np.asarray(xs, dtype=float) - 0.4 + width * (i + 0.5)
        devices = max(len(s) for s in sizes)
        ax.bar(pos, mean, width=width * 0.9, color=run_colour(i), yerr=err, capsize=3,
               label=f"{label}: {mean.mean():,.1f} KB (up to {devices} devices a round)")
        top = max(top, max(float(k.max()) for k in kb))
    ax.set_ylabel("KB sent up per device (1 KB = 1,024 bytes)")
    _headroom(ax, top, len(runs))
    _round_ticks(ax, runs)
    ax.grid(axis="x", visible=False)
    ax.legend(loc="upper left")
