"""Packed Paillier beside its peers (CKKS as NVFlare configures it): ``fedids bench --peers``.

Log scales throughout: the schemes differ by 10-200x in device time and bytes, which
linear bars would flatten into one visible bar and one invisible one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fedids.report.bench_common import label_bars, num, short_number, title
from fedids.report.canvas import new_figure, save_png, style
from fedids.report.runs import ReportError

SCHEME_LABELS = {
    "packed": "packed Paillier",
    "packed_paillier": "packed Paillier",
    "paillier": "packed Paillier",
    "ckks": "CKKS (TenSEAL, NVFlare settings)",
}
#: each figure, and the keys it may be recorded under (first found wins): the documented
#: names, then those of ``fedids bench --json`` (where a packed "encrypt_seconds" is the
#: total over all clients, so the per-client key comes first)
KEYS = {
    "encrypt": ("encrypt_seconds_per_client", "encrypt_seconds"),
    "decrypt": ("decrypt_seconds",),
    "client": ("client_seconds",),
    "server": ("server_seconds", "aggregate_seconds"),
    "up": ("upload_bytes", "upload_bytes_per_client"),
    "down": ("download_bytes", "download_bytes_per_client"),
    "error": ("max_error", "max_abs_error"),
}


def _get(metrics: Mapping[str, Any], figure: str) -> float | None:
    for key in KEYS[figure]:
        value = num(metrics.get(key))
        if value is not None:
            return value
    return None


def _is_scheme(value: Any) -> bool:
    return isinstance(value, Mapping) and any(k in value for ks in KEYS.values() for k in ks)


def _peer_sets(doc: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(model-size label, {scheme: metrics}) for each model size in ``doc``."""
    peers = doc.get("peers")
    if isinstance(peers, Mapping) and peers and all(str(k).isdigit() for k in peers):
        return [(f"{int(k):,} parameters", group) for k, group in peers.items()
                if isinstance(group, Mapping)]  # fedids bench --json: {"5125": {...}}
    if isinstance(peers, Mapping) and peers:
        size = doc.get("n_params")
        return [(f"{size:,} parameters" if isinstance(size, int) else "weights", peers)]
    if isinstance(peers, Sequence) and not isinstance(peers, str) and peers:
        return [(f"{p['n_params']:,} parameters" if isinstance(p.get("n_params"), int)
                 else f"set {i + 1}", p.get("schemes") or {})
                for i, p in enumerate(peers) if isinstance(p, Mapping)]
    raise ReportError("peer benchmark document has no 'peers' object or list (was TenSEAL "
                      "installed when the benchmark ran?)")


def _pair(ax: Any, x: np.ndarray, width: float, first: list[float | None],
          second: list[float | None], colour: str, names: tuple[str, str]) -> None:
    """Two bars per group (encrypt/decrypt, up/down): solid and light, values on top."""
    half = width / 2
    for offset, values, alpha, name in ((-half / 2, first, 1.0, names[0]),
                                        (half / 2, second, 0.45, names[1])):
        if all(v is None for v in values):
            continue
        bars = ax.bar(x + offset, [np.nan if v is None else v for v in values],
                      width=half * 0.95, color=colour, alpha=alpha, label=name)
        label_bars(ax, bars, values, short_number)


def plot_peers(doc: Mapping[str, Any], out_png: str | Path) -> Path:
    """Packed Paillier vs CKKS: device time, server time, bytes (``fedids bench --peers``).

    Accepted shapes (times in seconds per device per round, sizes in bytes per device)::

        {"n_params": 5125, "clients": 10,                       # optional
         "synthetic_data": false,                               # optional
         "peers": {"packed_paillier": {"encrypt_seconds": 0.092, "decrypt_seconds": 0.079,
                                       "client_seconds": 0.171,  # used when encrypt and
                                                                 # decrypt are not given
                                       "server_seconds": 0.028,
                                       "upload_bytes": 30048, "download_bytes": 30048,
                                       "max_error": 1.9e-2,      # optional
                                       "label": "optional legend text"},
                   "ckks": {...same fields...}}}

    or several model sizes: ``{"peers": [{"n_params": 5125, "schemes": {...}}, ...]}``,
    or the whole ``fedids bench --json`` document, whose ``peers`` maps a parameter count to
    ``{"packed": {...}, "ckks": {...}, "breakeven_link_mbit_per_s": 5.2, "settings": {...}}``
    (``*_per_client``, ``aggregate_seconds`` and ``max_abs_error`` are read there).
    """
    sets = _peer_sets(doc)
    schemes = list(dict.fromkeys(s for _, group in sets for s, m in group.items()
                                 if _is_scheme(m)))
    order = list(SCHEME_LABELS)  # packed Paillier first, then its peers, then the unknown
    schemes.sort(key=lambda s: order.index(s) if s in order else len(order))
    if not schemes:
        raise ReportError("peer benchmark document names no scheme")
    width = min(0.8 / len(schemes), 0.3)
    pos = np.arange(len(sets))
    with style():
        fig = new_figure(18, 6.2)
        axes = [fig.add_subplot(1, 3, i) for i in (1, 2, 3)]
        error_notes: list[str] = []
        for j, scheme in enumerate(schemes):
            ms = [group.get(scheme) or {} for _, group in sets]
            label = next((str(m["label"]) for m in ms if m.get("label")),
                         SCHEME_LABELS.get(scheme, scheme))
            errors = [e for e in (_get(m, "error") for m in ms) if e is not None]
            if errors:
                error_notes.append(f"{label} " + ", ".join(f"{e:.1e}" for e in errors))
            x = pos - width * len(schemes) / 2 + width * (j + 0.5)
            colour = f"C{j}"

            def ms_of(figure: str, metrics: list[Mapping[str, Any]] = ms) -> list[float | None]:
                return [None if (v := _get(m, figure)) is None else v * 1000 for m in metrics]

            enc, dec = ms_of("encrypt"), ms_of("decrypt")
            if all(v is None for v in enc + dec):
                enc = ms_of("client")
                _pair(axes[0], x, width, enc, dec, colour, (f"{label}: client", ""))
            else:
                _pair(axes[0], x, width, enc, dec, colour,
                      (f"{label}: encrypt", f"{label}: decrypt"))
            server = ms_of("server")
            bars = axes[1].bar(x, [np.nan if v is None else v for v in server],
                               width=width * 0.95, color=colour, label=label)
            label_bars(axes[1], bars, server, short_number)
            up = [None if (v := _get(m, "up")) is None else v / 1024 for m in ms]
            down = [None if (v := _get(m, "down")) is None else v / 1024 for m in ms]
            _pair(axes[2], x, width, up, down, colour, (f"{label}: up", f"{label}: down"))
        panels = (("Device time per round (encrypt, decrypt)", "milliseconds (log scale)"),
                  ("Server time per aggregation", "milliseconds (log scale)"),
                  ("Bytes per device per round (up, down)", "KB, 1 KB = 1,024 bytes (log scale)"))
        for ax, (text, ylabel) in zip(axes, panels, strict=True):
            ax.set_yscale("log")
            ax.set_title(text)
            ax.set_ylabel(ylabel)
            ax.set_xticks(pos)
            ax.set_xticklabels([name for name, _ in sets])
            ax.set_xlabel("model size")
            ax.set_xlim(-0.6, len(sets) - 0.4)
            ax.grid(axis="x", visible=False)
            low, high = ax.get_ylim()
            ax.set_ylim(low, high * 30)  # room for the legend above the tallest bar
            ax.legend(loc="upper left", fontsize=8.5)
        clients = doc.get("clients") or next(
            (g["settings"].get("clients") for _, g in sets
             if isinstance(g.get("settings"), Mapping)), None)
        breakeven = [f"{v:.1f} Mbit/s ({name})" for name, g in sets
                     if (v := num(g.get("breakeven_link_mbit_per_s"))) is not None]
        title(fig, "Packed Paillier vs CKKS on the same weight vectors"
              + (f" ({clients} clients)" if clients else ""), doc,
              ["one run, interleaved repetitions on one machine; lower is better in every panel",
               "max error vs exact FedAvg: " + "; ".join(error_notes) if error_notes else "",
               "packed Paillier is faster end to end (CPU + transfer) on links slower than "
               + ", ".join(breakeven) if breakeven else ""])
        fig.subplots_adjust(top=1 - 1.55 / fig.get_figheight(), bottom=0.11, left=0.05,
                            right=0.98, wspace=0.25)
        return save_png(fig, out_png)
