"""Macro-F1 per data file, classification and method: ``benchmarks/real_data.py`` (issue 8)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fedids.report.bench_common import label_bars, num, title
from fedids.report.canvas import new_figure, save_png, style
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
#: benchmarks/real_data.py writes one row per file x classification with these columns
_WIDE_COLUMNS = {"majority": "majority", "forest": "random_forest", "torch": "torch_central"}
_PARTITIONS = {"dir": "dirichlet", "dirichlet": "dirichlet", "iid": "iid"}


def _long_records(records: Sequence[Any]) -> list[dict[str, Any]]:
    """One record per file x classification x method, from either accepted shape."""
    out: list[dict[str, Any]] = []
    for r in records:
        if not isinstance(r, Mapping):
            continue
        if r.get("method"):
            out.append(dict(r))
            continue
        where = {"file": r.get("file") or r.get("dataset"),
                 "classification": r.get("classification")}
        for column, method in _WIDE_COLUMNS.items():
            if column in r:
                out.append({**where, "method": method, "macro_f1": r[column]})
        federated = r.get("federated")
        for name, result in (federated.items() if isinstance(federated, Mapping) else ()):
            words = str(name).replace("_", " ").split()
            if len(words) == 2 and words[1] in _PARTITIONS:
                method = f"fed_{words[0]}_{_PARTITIONS[words[1]]}"
            else:
                method = f"fed_{'_'.join(words)}"
            result = result if isinstance(result, Mapping) else {}
            out.append({**where, "method": method, "macro_f1": result.get("macro_f1"),
                        "quality_warning": result.get("quality_warning"),
                        "error": result.get("error")})
    return out


def plot_real_data(doc: Mapping[str, Any] | Sequence[Any], out_png: str | Path) -> Path:
    """Grouped bars of macro-F1 per file x classification x method (issue 8's benchmark).

    Accepted shapes (a bare list of the records is accepted too)::

        {"synthetic_data": false,                      # optional
         "results": [
            {"file": "GPS_Tracker.csv",                # or "dataset"
             "classification": "multi",                # "binary" | "multi"
             "method": "fed_paillier_dirichlet",       # keys of REAL_DATA_METHODS, or any
             "macro_f1": 0.91,                         # null when the method failed
             "quality_warning": null,                  # optional; set: the bar is hatched
             "label": "optional legend text for an unknown method",
             "error": "optional one line when it failed"},
            ...]}

    or the rows ``benchmarks/real_data.py`` writes, one per file x classification::

        [{"file": "GPS_Tracker.csv", "classification": "multi",
          "majority": 0.11, "forest": 0.93, "torch": 0.91,
          "federated": {"plain iid": {"macro_f1": 0.9, "quality_warning": null},
                        "paillier dir": {"macro_f1": null, "error": "..."}, ...}}, ...]

    One panel per classification; within it one group per file, one bar per method.
    """
    records = doc if isinstance(doc, Sequence) else doc.get("results")
    meta: Mapping[str, Any] = doc if isinstance(doc, Mapping) else {}
    if not isinstance(records, Sequence) or not records:
        raise ReportError("real-data benchmark document has no 'results' list")
    rows = [r for r in _long_records(records) if r.get("method")]
    if not rows:
        raise ReportError("real-data benchmark document: no result names a method")
    files = list(dict.fromkeys(str(r.get("file") or r.get("dataset") or "?") for r in rows))
    kinds = list(dict.fromkeys(str(r.get("classification") or "?") for r in rows))
    known = {k: (label, colour) for k, label, colour in REAL_DATA_METHODS}
    methods = [k for k, _, _ in REAL_DATA_METHODS if any(r["method"] == k for r in rows)]
    methods += [m for m in dict.fromkeys(str(r["method"]) for r in rows) if m not in known]
    extra_labels = {str(r["method"]): str(r["label"]) for r in rows if r.get("label")}
    def key(r: Mapping[str, Any]) -> tuple[str, str, str]:
        return (str(r.get("file") or r.get("dataset") or "?"),
                str(r.get("classification") or "?"), str(r["method"]))

    table = {key(r): num(r.get("macro_f1")) for r in rows}
    warned = {key(r) for r in rows if r.get("quality_warning")}
    with style():
        fig = new_figure(max(10.0, 2.2 * len(files) * len(methods) / 3 + 4),
                         4.6 * len(kinds) + 1.2)
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
                for bar, f in zip(bars, files, strict=True):
                    if (f, kind, method) in warned:
                        bar.set_hatch("xx")
                label_bars(ax, bars, values, "{:.3f}", rotate=bar_px < 38)
            ax.set_xticks(np.arange(len(files)))
            ax.set_xticklabels(files)
            ax.set_ylim(0, 1.18)
            ax.set_yticks(np.linspace(0, 1, 6))
            ax.set_ylabel("macro-F1 (0-1)")
            ax.set_title(f"{kind} classification")
            ax.grid(axis="x", visible=False)
        axes[-1].set_xlabel("data file")
        from matplotlib.patches import Patch

        # legend patches drawn here: a bar container's own would copy a warning's hatch
        handles = [Patch(facecolor=known.get(m, (None, f"C{j}"))[1], edgecolor="0.25",
                         label=known.get(m, (extra_labels.get(m, m), None))[0])
                   for j, m in enumerate(methods)]
        if warned:
            handles.append(Patch(facecolor="white", edgecolor="0.25", hatch="xx",
                                 label="hatched: the run's quality warning fired"))
        axes[-1].legend(handles=handles, loc="upper center",
                        bbox_to_anchor=(0.5, -0.1 if len(kinds) == 1 else -0.18),
                        ncols=min(4, len(handles)), frameon=False)
        title(fig, "Macro-F1 per data file and method", meta,
              "grey bar: majority-class baseline; 'n/a': the method did not run or failed")
        fig.subplots_adjust(top=1 - 1.5 / fig.get_figheight(),
                            bottom=0.2 if len(kinds) == 1 else 0.13, hspace=0.35, left=0.06,
                            right=0.98)
        return save_png(fig, out_png)
