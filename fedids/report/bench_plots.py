"""A PNG beside each benchmark's JSON: real-data quality, stragglers, Paillier vs CKKS.

The benchmark owners call these with the document they write as JSON; each function's
docstring defines the shape it accepts. Unknown extra keys are ignored, missing figures
are shown as "n/a" (never invented), and a document flagged ``"synthetic_data": true``
says SYNTHETIC in the title.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fedids.report.canvas import WARNING_COLOUR, new_figure, save_png, style
from fedids.report.runs import ReportError

#: methods of the real-data benchmark, in plotting order: (key, legend label, colour)
REAL_DATA_METHODS: tuple[tuple[str, str, str], ...] = (
    ("majority", "majority class (baseline)", "#9E9E9E"),
    ("random_forest", "random forest, central", "#2E7D32"),
    ("torch_central", "torch model, central", "#8E24AA"),
    ("fed_plain_iid", "federated plain, IID", "#90CAF9"),
    ("fed_plain_dirichlet", "federated plain, Dirichlet", "#1565C0"),
    ("fed_paillier_iid", "federated Paillier, IID", "#FFCC80"),
    ("fed_paillier_dirichlet", "federated Paillier, Dirichlet", "#E65100"),
)


def num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if np.isfinite(value) else None


def title(fig: Any, text: str, doc: Mapping[str, Any], note: str = "") -> None:
    """Figure title, a grey note under it, and SYNTHETIC in red when the document says so."""
    fig.suptitle(text, fontsize=13, fontweight="bold", y=0.985)
    lines = [(note, "0.3", "normal")] if note else []
    if doc.get("synthetic_data"):
        lines.insert(0, ("SYNTHETIC DATA: generated records, not real traffic; not results on "
                         "real data", WARNING_COLOUR, "bold"))
    height = fig.get_figheight()
    for k, (line, colour, weight) in enumerate(lines):
        fig.text(0.5, 1 - (0.5 + 0.25 * k) / height, line, ha="center", va="top",
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


def plot_real_data(doc: Mapping[str, Any] | Sequence[Any], out_png: str | Path) -> Path:
    """Grouped bars of macro-F1 per file x classification x method (issue 8's benchmark).

    Accepted shape (a bare list of result records is accepted too)::

        {"synthetic_data": false,                      # optional
         "results": [
            {"file": "GPS_Tracker.csv",                # or "dataset"
             "classification": "multi",                # "binary" | "multi"
             "method": "fed_paillier_dirichlet",       # keys of REAL_DATA_METHODS, or any
             "macro_f1": 0.91,                         # null when the method failed
             "label": "optional legend text for an unknown method",
             "error": "optional one line when it failed"},
            ...]}

    One panel per classification; within it one group per file, one bar per method.
    """
    records = doc if isinstance(doc, Sequence) else doc.get("results")
    meta: Mapping[str, Any] = doc if isinstance(doc, Mapping) else {}
    if not isinstance(records, Sequence) or not records:
        raise ReportError("real-data benchmark document has no 'results' list")
    rows = [r for r in records if isinstance(r, Mapping) and r.get("method")]
    files = list(dict.fromkeys(str(r.get("file") or r.get("dataset") or "?") for r in rows))
    kinds = list(dict.fromkeys(str(r.get("classification") or "?") for r in rows))
    known = {k: (label, colour) for k, label, colour in REAL_DATA_METHODS}
    methods = [k for k, _, _ in REAL_DATA_METHODS if any(r["method"] == k for r in rows)]
    methods += [m for m in dict.fromkeys(str(r["method"]) for r in rows) if m not in known]
    extra_labels = {str(r["method"]): str(r["label"]) for r in rows if r.get("label")}
    table = {(str(r.get("file") or r.get("dataset") or "?"), str(r.get("classification")
              or "?"), str(r["method"])): num(r.get("macro_f1")) for r in rows}
    with style():
        fig = new_figure(max(10.0, 2.2 * len(files) * len(methods) / 3 + 4), 4.6 * len(kinds) + 1.2)
        axes = [fig.add_subplot(len(kinds), 1, i + 1) for i in range(len(kinds))]
        width = 0.84 / len(methods)
        # bar width in pixels at 100 dpi: "0.912" needs about 35 px to stand upright
        bar_px = fig.get_figwidth() * 92 / len(files) * width * 0.92
        for ax, kind in zip(axes, kinds, strict=True):
            for j, method in enumerate(methods):
                label, colour = known.get(method, (extra_labels.get(method, method), f"C{j}"))
                values = [table.get((f, kind, method)) for f in files]
                pos = np.arange(len(files)) - 0.42 + width * (j + 0.5)
                bars = ax.bar(pos, [v or 0.0 for v in values], width=width * 0.92,
                              color=colour, label=label, edgecolor="0.25", linewidth=0.4)
                label_bars(ax, bars, values, "{:.3f}", rotate=bar_px < 38)
            ax.set_xticks(np.arange(len(files)))
            ax.set_xticklabels(files)
            ax.set_ylim(0, 1.18)
            ax.set_yticks(np.linspace(0, 1, 6))
            ax.set_ylabel("macro-F1 (0-1)")
            ax.set_title(f"{kind} classification")
            ax.grid(axis="x", visible=False)
        axes[-1].set_xlabel("data file (validation split: the same records for every method)")
        axes[0].legend(loc="upper center", bbox_to_anchor=(0.5, -0.08 if len(kinds) == 1
                       else -0.12), ncols=min(4, len(methods)), frameon=False)
        if len(kinds) > 1:
            axes[0].get_legend().remove()
            axes[-1].legend(loc="upper center", bbox_to_anchor=(0.5, -0.18),
                            ncols=min(4, len(methods)), frameon=False)
        title(fig, "Macro-F1 per data file and method", meta,
              "grey bar: majority-class baseline; 'n/a': the method did not run or failed")
        fig.subplots_adjust(top=1 - 1.5 / fig.get_figheight(),
                            bottom=0.2 if len(kinds) == 1 else 0.13, hspace=0.35, left=0.06,
                            right=0.98)
        return save_png(fig, out_png)


def _variants(doc: Mapping[str, Any]) -> list[str]:
    keys = [k for k, v in doc.items() if isinstance(v, Mapping)
            and ("curve" in v or "final_macro_f1" in v or "time_to_target_s" in v)]
    return sorted(keys, key=lambda k: {"sync": 0, "buffered": 1}.get(k, 2))


def plot_stragglers(doc: Mapping[str, Any], out_png: str | Path) -> Path:
    """Sync vs buffered aggregation with a slow device (issue 12's benchmark).

    Accepted shape (any top-level key whose value holds these fields is a variant)::

        {"sync": {"curve": [[seconds, macro_f1], ...],   # one point per aggregation;
                                                         # a 3rd element true/false = did
                                                         # the slow device contribute
                  "time_to_target_s": 812.0,             # null: never reached
                  "final_macro_f1": 0.93,
                  "aggregations": 10,
                  "aggregations_with_slow_device": 10},
         "buffered": {...same fields...},
         "target_macro_f1": 0.92,      # optional; default: sync final_macro_f1 - 0.01
         "devices": 4, "slow_factor": 4, "mode": "paillier",   # optional, for the title
         "synthetic_data": false}      # optional
    """
    variants = _variants(doc)
    if not variants:
        raise ReportError("straggler document has no variant ('sync', 'buffered', ...)")
    target = num(doc.get("target_macro_f1"))
    sync_final = num(doc.get("sync", {}).get("final_macro_f1")) if "sync" in doc else None
    target_note = "target macro-F1"
    if target is None and sync_final is not None:
        target, target_note = sync_final - 0.01, "target: sync final macro-F1 - 0.01"
    with style():
        fig = new_figure(18, 5.8)
        ax_curve, ax_time, ax_agg = (fig.add_subplot(1, 3, i) for i in (1, 2, 3))
        for i, name in enumerate(variants):
            v = doc[name]
            points = [p for p in v.get("curve") or [] if isinstance(p, Sequence) and len(p) >= 2]
            if points:
                t = [float(p[0]) for p in points]
                f1 = [float(p[1]) for p in points]
                ax_curve.plot(t, f1, color=f"C{i}", lw=1.6, label=name)
                slow = [p[2] if len(p) > 2 else None for p in points]
                filled = [k for k, s in enumerate(slow) if s is not False]
                hollow = [k for k, s in enumerate(slow) if s is False]
                ax_curve.scatter([t[k] for k in filled], [f1[k] for k in filled], color=f"C{i}",
                                 s=28, zorder=3)
                ax_curve.scatter([t[k] for k in hollow], [f1[k] for k in hollow], s=28,
                                 facecolor="white", edgecolor=f"C{i}", zorder=3)
            reached = num(v.get("time_to_target_s"))
            if reached is not None:
                ax_curve.axvline(reached, color=f"C{i}", ls=":", lw=1.2)
        if target is not None:
            ax_curve.axhline(target, color="0.2", ls="--", lw=1, label=f"{target_note} "
                             f"({target:.3f})")
        flagged = any(len(p) > 2 for n in variants for p in doc[n].get("curve") or [])
        if flagged:
            ax_curve.scatter([], [], facecolor="white", edgecolor="0.3", s=28,
                             label="aggregation without the slow device")
        ax_curve.set_xlabel("wall-clock time since the run started (s)")
        ax_curve.set_ylabel("macro-F1 (0-1)")
        ax_curve.set_title("Macro-F1 over time (dotted: target reached)")
        ax_curve.legend(loc="lower right")

        times = [num(doc[n].get("time_to_target_s")) for n in variants]
        bars = ax_time.bar(variants, [t or 0.0 for t in times],
                           color=[f"C{i}" for i in range(len(variants))])
        base = times[0] if variants[0] == "sync" else None
        texts = [None if t is None else t for t in times]
        label_bars(ax_time, bars, texts, "{:,.1f} s")
        if base:
            for bar, t in zip(bars, times, strict=True):
                if t is not None:
                    ax_time.text(bar.get_x() + bar.get_width() / 2, bar.get_height() / 2,
                                 f"{t / base:.2f}x sync", ha="center", color="white",
                                 fontweight="bold")
        ax_time.set_ylabel("seconds to reach the target macro-F1")
        ax_time.set_title("Time to target ('n/a': not reached)")
        ax_time.set_ylim(top=max([t for t in times if t] or [1.0]) * 1.2)
        ax_time.grid(axis="x", visible=False)

        pos = np.arange(len(variants))
        total = [num(doc[n].get("aggregations")) for n in variants]
        slow = [num(doc[n].get("aggregations_with_slow_device")) for n in variants]
        b1 = ax_agg.bar(pos - 0.2, [t or 0 for t in total], width=0.38, color="0.6",
                        label="all aggregations")
        b2 = ax_agg.bar(pos + 0.2, [s or 0 for s in slow], width=0.38, color="#C44E52",
                        label="aggregations including the slow device")
        label_bars(ax_agg, b1, total, "{:.0f}")
        label_bars(ax_agg, b2, slow, "{:.0f}")
        ax_agg.set_xticks(pos)
        ax_agg.set_xticklabels(variants)
        ax_agg.set_ylabel("number of aggregations")
        ax_agg.set_title("Aggregations including the slow device")
        ax_agg.set_ylim(top=max([t for t in total if t] or [1.0]) * 1.3)
        ax_agg.legend(loc="upper left")
        ax_agg.grid(axis="x", visible=False)
        setup = ", ".join(str(s) for s in (
            f"{doc['devices']} devices" if doc.get("devices") else None,
            f"one {doc['slow_factor']}x slower" if doc.get("slow_factor") else None,
            f"{doc['mode']} mode" if doc.get("mode") else None) if s)
        title(fig, "Stragglers: sync vs buffered aggregation" + (f" ({setup})" if setup
              else ""), doc, "same data and seed" + ("; filled dots: the slow device contributed"
                                                   if flagged else ""))
        fig.subplots_adjust(top=1 - 1.3 / fig.get_figheight(), bottom=0.12, left=0.05,
                            right=0.98, wspace=0.28)
        return save_png(fig, out_png)
