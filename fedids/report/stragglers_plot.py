"""Sync vs buffered aggregation with a slow device: ``benchmarks/stragglers.py`` (issue 12)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fedids.report.bench_common import label_bars, num, title
from fedids.report.canvas import new_figure, save_png, style
from fedids.report.runs import ReportError


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
         "target_macro_f1": 0.92,      # optional (also read per variant); default: sync
                                       # final_macro_f1 - 0.01
         "devices": 4, "slow_factor": 4, "mode": "paillier",   # optional, for the title
                                       # (also read from a "setup" object)
         "synthetic_data": false}      # optional

    A variant's ``baseline_macro_f1`` (majority class) is drawn as a dotted line, and its
    ``setup_seconds`` is named on the time axis (the curve's clock starts after setup).
    """
    variants = _variants(doc)
    if not variants:
        raise ReportError("straggler document has no variant ('sync', 'buffered', ...)")
    setup_doc = doc.get("setup") if isinstance(doc.get("setup"), Mapping) else {}
    info = {k: doc.get(k, setup_doc.get(k)) for k in ("devices", "slow_factor", "mode")}
    target = num(doc.get("target_macro_f1"))
    if target is None:
        target = next((t for n in variants if (t := num(doc[n].get("target_macro_f1")))), None)
    sync_final = num(doc.get("sync", {}).get("final_macro_f1")) if "sync" in doc else None
    target_note = "target macro-F1"
    if target is None and sync_final is not None:
        target, target_note = sync_final - 0.01, "target: sync final macro-F1 - 0.01"
    baselines = [b for n in variants if (b := num(doc[n].get("baseline_macro_f1"))) is not None]
    setups = [s for n in variants if (s := num(doc[n].get("setup_seconds")))]
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
        if baselines:
            ax_curve.axhline(max(baselines), color="0.45", ls=":", lw=1.2,
                             label=f"majority-class baseline ({max(baselines):.3f})")
        flagged = any(len(p) > 2 for n in variants for p in doc[n].get("curve") or [])
        if flagged:
            ax_curve.scatter([], [], facecolor="white", edgecolor="0.3", s=28,
                             label="aggregation without the slow device")
        ax_curve.set_xlabel(
            "wall-clock seconds after setup (setup took " + ", ".join(
                f"{v:.0f}" for v in setups) + " s)" if setups
            else "wall-clock time since the run started (s)")
        ax_curve.set_ylabel("macro-F1 (0-1)")
        ax_curve.set_title("Macro-F1 over time (dotted: target reached)")
        ax_curve.legend(loc="best")

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
            f"{info['devices']} devices" if info["devices"] else None,
            f"one {info['slow_factor']}x slower" if info["slow_factor"] else None,
            f"{info['mode']} mode" if info["mode"] else None) if s)
        title(fig, "Stragglers: sync vs buffered aggregation" + (f" ({setup})" if setup
              else ""), doc, "same data and seed" + ("; filled dots: the slow device contributed"
                                                   if flagged else ""))
        fig.subplots_adjust(top=1 - 1.3 / fig.get_figheight(), bottom=0.12, left=0.05,
                            right=0.98, wspace=0.28)
        return save_png(fig, out_png)
