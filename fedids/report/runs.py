"""Reading a run's ``metrics.json`` (and ``config.yaml``) into what the plots need.

Reports must keep working while the round record grows (buffered aggregation adds
per-aggregation records with contributors and staleness; the protocol adds fields), so
every figure is read with ``.get`` and a missing field means "not recorded", never a
crash. Extra fields are ignored. No matplotlib here: the data layer imports without it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from fedids.metrics import from_confusion

METRICS_FILE = "metrics.json"

#: the phases of a round's time split, and the record fields each one sums. Decryption
#: happens once per aggregate on each device, either when evaluating it or when the next
#: fit starts, so both fields count.
TIME_PHASES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("train", ("train_seconds",)),
    ("encrypt", ("encrypt_seconds",)),
    ("aggregate", ("aggregate_seconds",)),
    ("decrypt", ("decrypt_seconds", "evaluate_decrypt_seconds")),
)


class ReportError(ValueError):
    """A run directory or document that cannot be reported; the message is one line."""


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if np.isfinite(value) else None


@dataclass
class RunData:
    """One run: its header fields, its round records (sorted) and its composed config."""

    path: Path
    header: dict[str, Any]
    rounds: list[dict[str, Any]]
    config: dict[str, Any] = field(default_factory=dict)

    # ---- what ran -------------------------------------------------------------------
    def _setting(self, key: str, default: str) -> str:
        """A config group's name, from the header if recorded there, else config.yaml."""
        value = self.header.get(key)
        if isinstance(value, dict):
            value = value.get("name")
        if value in (None, ""):
            group = self.config.get(key)
            value = group.get("name") if isinstance(group, dict) else group
        return str(value) if value not in (None, "") else default

    @property
    def name(self) -> str:
        return str(self.header.get("run_name") or self.path.name)

    @property
    def mode(self) -> str:
        return self._setting("mode", "?")

    @property
    def classification(self) -> str:
        return self._setting("classification", "?")

    @property
    def dataset(self) -> str:
        return self._setting("dataset", "?")

    @property
    def aggregation(self) -> str:
        return self._setting("aggregation", "sync")

    @property
    def partition(self) -> str:
        name = self._setting("partition", "?")
        group = self.config.get("partition")
        if name == "iid":
            return "IID"
        if name == "dirichlet":
            alpha = group.get("alpha") if isinstance(group, dict) else None
            return f"Dirichlet α={alpha}" if alpha is not None else "Dirichlet"
        return name

    @property
    def synthetic(self) -> bool:
        flag = self.header.get("synthetic_data")
        return bool(flag) if flag is not None else self.dataset == "synthetic"

    @property
    def quality_warning(self) -> str | None:
        warning = self.header.get("quality_warning")
        return str(warning) if warning else None

    @property
    def status(self) -> str:
        return str(self.header.get("status") or "unknown")

    # ---- figures per round ------------------------------------------------------------
    def x(self) -> list[int]:
        """Round numbers (buffered runs: aggregation numbers), in record order."""
        return [_round_number(r, i) for i, r in enumerate(self.rounds)]

    def series(self, key: str) -> tuple[list[int], list[float]]:
        """(round, value) pairs of the rounds that recorded ``key`` as a finite number."""
        xs, ys = [], []
        for x, r in zip(self.x(), self.rounds, strict=True):
            value = _number(r.get(key))
            if value is not None:
                xs.append(x)
                ys.append(value)
        return xs, ys

    def baseline_series(self) -> tuple[list[int], list[float]]:
        """Majority-class macro-F1 per round: the recorded figure, else derived from the
        round's confusion matrix (same validation records, same macro-F1 definition)."""
        xs, ys = [], []
        for x, r in zip(self.x(), self.rounds, strict=True):
            value = _number(r.get("baseline_macro_f1"))
            if value is None:
                value = majority_macro_f1(r.get("confusion_matrix"))
            if value is not None:
                xs.append(x)
                ys.append(value)
        return xs, ys

    def time_split(self) -> tuple[list[int], dict[str, list[float]], list[float | None]]:
        """Rounds with any timing, each phase's seconds (0 when not recorded), wall time."""
        xs: list[int] = []
        phases: dict[str, list[float]] = {p: [] for p, _ in TIME_PHASES}
        wall: list[float | None] = []
        for x, r in zip(self.x(), self.rounds, strict=True):
            values = {p: [_number(r.get(k)) for k in keys] for p, keys in TIME_PHASES}
            if all(v is None for vs in values.values() for v in vs):
                continue
            xs.append(x)
            for p, vs in values.items():
                phases[p].append(sum(v for v in vs if v is not None))
            wall.append(_number(r.get("round_seconds")))
        return xs, phases, wall

    def upload_per_device(self) -> tuple[list[int], list[list[float]]]:
        """Bytes each device sent up, per round (only rounds that recorded them)."""
        xs, sizes = [], []
        for x, r in zip(self.x(), self.rounds, strict=True):
            raw = r.get("upload_bytes_by_device", r.get("upload_bytes_by_client"))
            if isinstance(raw, dict):
                raw = list(raw.values())
            if not isinstance(raw, list | tuple):
                raw = []
            values = [v for v in map(_number, raw) if v is not None]
            if not values and _number(r.get("upload_bytes_per_client")) is not None:
                values = [float(r["upload_bytes_per_client"])]
            if values:
                xs.append(x)
                sizes.append(values)
        return xs, sizes

    def last_with(self, key: str) -> dict[str, Any] | None:
        """The last round record that holds ``key`` (what "last round" panels show)."""
        for r in reversed(self.rounds):
            if r.get(key) is not None:
                return r
        return None


def _round_number(record: dict[str, Any], index: int) -> int:
    for key in ("round", "aggregation"):
        value = record.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return index + 1


def majority_macro_f1(confusion: Any) -> float | None:
    """Macro-F1 of always predicting the most frequent true class of ``confusion``."""
    try:
        cm = np.asarray(confusion, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        return None
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] == 0 or cm.sum() <= 0:
        return None
    support = cm.sum(axis=1)
    majority = np.zeros_like(cm)
    majority[:, int(np.argmax(support))] = support
    return float(from_confusion(majority, [str(i) for i in range(len(support))])["macro_f1"])


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError(f"{path}: no such file (is this a fedids run directory?)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(doc, dict):
        raise ReportError(f"{path}: expected a JSON object, got {type(doc).__name__}")
    return doc


def load_run(path: str | Path) -> RunData:
    """A run from its directory (or its ``metrics.json``); :class:`ReportError` if unusable."""
    path = Path(path)
    metrics = path if path.suffix == ".json" else path / METRICS_FILE
    doc = _read_json(metrics)
    rounds = doc.get("rounds", [])
    if not isinstance(rounds, list):
        raise ReportError(f"{metrics}: field 'rounds' is not a list")
    rounds = [r for r in rounds if isinstance(r, dict)]
    rounds.sort(key=lambda r: _round_number(r, 0))
    header = {k: v for k, v in doc.items() if k != "rounds"}
    config: dict[str, Any] = {}
    cfg_file = metrics.parent / "config.yaml"
    if cfg_file.is_file():
        try:
            loaded = yaml.safe_load(cfg_file.read_text(encoding="utf-8"))
            config = loaded if isinstance(loaded, dict) else {}
        except (OSError, yaml.YAMLError):
            config = {}  # the labels then fall back to "?"; the figures do not need it
    return RunData(path=metrics.parent, header=header, rounds=rounds, config=config)


def run_labels(runs: list[RunData]) -> list[str]:
    """Legend labels that tell the runs apart: mode, partition, aggregation, then whatever
    else differs (classification, dataset), then, for runs still sharing a label, the run
    name, its folder, or a number."""
    labels = [f"{r.mode}, {r.partition}, {r.aggregation}" for r in runs]
    for attr in ("classification", "dataset"):
        if len({getattr(r, attr) for r in runs}) > 1:
            labels = [f"{lab}, {getattr(r, attr)}" for lab, r in zip(labels, runs, strict=True)]
    suffixes = (lambda i, r: r.name, lambda i, r: f"{r.path.parent.name}/{r.path.name}",
                lambda i, r: f"#{i + 1}")
    for base in sorted(set(labels)):
        group = [i for i, lab in enumerate(labels) if lab == base]
        if len(group) == 1:
            continue
        for suffix in suffixes:
            named = [f"{base} ({suffix(i, runs[i])})" for i in group]
            if len(set(named)) == len(named):
                for i, lab in zip(group, named, strict=True):
                    labels[i] = lab
                break
    return labels


def summary_rows(runs: list[RunData]) -> list[dict[str, Any]]:
    """One row per run: the figures a reader compares first (used by the HTML and CLI)."""
    rows = []
    for run, label in zip(runs, run_labels(runs), strict=True):
        last = run.rounds[-1] if run.rounds else {}
        _, base = run.baseline_series()
        _, secs = run.series("round_seconds")
        _, up = run.series("upload_bytes_per_client")
        fpr = _number(last.get("false_positive_rate"))
        rows.append(
            {
                "run": label,
                "run name": run.name,
                "data": _data_kind(run),
                "classification": run.classification,
                "rounds": len(run.rounds),
                "status": run.status,
                "final macro-F1": _number(last.get("macro_f1")),
                "majority baseline": base[-1] if base else None,
                "final FPR (%)": None if fpr is None else 100 * fpr,
                "mean round (s)": float(np.mean(secs)) if secs else None,
                "KB up / device / round": float(np.mean(up)) / 1024 if up else None,
                "quality warning": run.quality_warning or "",
            }
        )
    return rows


def format_summary(rows: list[dict[str, Any]]) -> str:
    """The summary rows as a fixed-width text table (what ``fedids report`` prints)."""
    if not rows:
        return "(no runs)"
    keys = [k for k in rows[0] if k not in ("run name", "quality warning")]
    cells = [[_cell(row[k]) for k in keys] for row in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    lines = ["  ".join(k.ljust(w) for k, w in zip(keys, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(cs, widths, strict=True)) for cs in cells]
    lines += [f"quality warning ({row['run']}): {row['quality warning']}" for row in rows
              if row["quality warning"]]
    return "\n".join(lines)


def _data_kind(run: RunData) -> str:
    if run.synthetic:
        return "SYNTHETIC" if "synth" in run.dataset.lower() else f"{run.dataset} (SYNTHETIC)"
    return f"{run.dataset} (real)"


def number_text(value: float) -> str:
    """4 significant figures: 0.9363, 8.373, 21.44, 5762 (the table's figures)."""
    return f"{value:.4g}" if abs(value) < 10_000 else f"{value:,.0f}"


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    return number_text(value) if isinstance(value, float) else str(value)
