"""Group detections into alerts a person can act on.

One alert per (attack class, source address, destination address, **burst**) instead of
one per flow: a DoS burst of 50,000 flows is one alert with a count, not 50,000 messages.

A burst is a run of detections of one class between one source and one destination with
no silence longer than the window (``--window``, 60 s) between them: a flow starts a new
burst when it starts more than one window after every earlier flow of the run ended.
A burst that continues across many windows therefore stays ONE alert whose count and
last_seen grow, instead of one alert per window. The alert is named after the window
(aligned to multiples of the window length in epoch seconds) in which its burst started,
so the same flows always give the same alert id.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass

import polars as pl

from fedids.alerts.errors import AlertsInputError

#: a burst ends after this many windows without a detection (``--burst-gap`` overrides)
GAP_WINDOWS = 5

#: ports/services kept per alert (a port scan touches thousands; the count says how many)
MAX_PORTS = 64
MAX_SERVICES = 16


def default_gap(window: float) -> float:
    """The longest silence inside one burst: :data:`GAP_WINDOWS` windows."""
    return GAP_WINDOWS * float(window)


def check_gap(gap: float, window: float) -> None:
    """A burst gap shorter than the window could start two bursts of one pair in the same
    window, and both would get the same alert id."""
    if not (math.isfinite(gap) and gap >= window):
        raise AlertsInputError(
            f"--burst-gap must be at least the window ({window:g} s), got {gap:g}"
        )


@dataclass(frozen=True)
class AlertGroup:
    """Detections of one class between one source and one destination in one burst."""

    attack_class: str
    src: str | None
    dst: str | None
    window_start: int  # epoch seconds, a multiple of window_seconds: where the burst began
    window_seconds: int
    count: int
    first_seen: float  # epoch seconds
    last_seen: float
    prob_mean: float
    prob_max: float
    src_ports: tuple[int, ...]  # most frequent first, at most MAX_PORTS
    src_port_count: int  # distinct source ports in total
    dst_ports: tuple[int, ...]
    dst_port_count: int
    protocols: tuple[str, ...]
    services: tuple[tuple[str | None, int | None], ...]  # (protocol, dst port), most frequent
    timed: bool  # False when the flows carried no time and detection time was used
    last_window_start: int | None = None  # window of the burst's latest flow (None: the first)

    @property
    def window_end(self) -> int:
        """End of the last window the burst touched (epoch seconds)."""
        last = self.window_start if self.last_window_start is None else self.last_window_start
        return last + self.window_seconds

    @property
    def windows(self) -> int:
        """How many windows the burst spans."""
        return (self.window_end - self.window_start) // self.window_seconds

    def digest(self) -> str:
        """Fingerprint of the content (same flows -> same digest), for the outbox."""
        data = json.dumps(asdict(self), sort_keys=True, default=str).encode()
        return hashlib.sha256(data).hexdigest()


def _ranked(d: pl.DataFrame, keys: list[str], cols: list[str], limit: int, name: str):
    """Per group: distinct non-null ``cols`` values, most frequent first, ties by value."""
    present = pl.any_horizontal([pl.col(c).is_not_null() for c in cols])
    value = pl.struct(cols) if len(cols) > 1 else pl.col(cols[0])
    return (
        d.filter(present)
        .group_by([*keys, *cols])
        .agg(pl.len().alias("_n"))
        .sort(["_n", *cols], descending=[True] + [False] * len(cols), nulls_last=True)
        .group_by(keys, maintain_order=True)
        .agg(value.head(limit).alias(name))
    )


def aggregate(
    detections: pl.DataFrame, window: float, detection_time: float, gap: float | None = None
) -> list[AlertGroup]:
    """Group a detections table (see :func:`fedids.alerts.flows.detections_table`).

    First/last seen come from the flows' start/last times; flows without times count as
    seen at their ``arrival`` column if there is one, else at ``detection_time``.
    Groups are bursts (see the module doc): ``gap`` is the longest silence a burst may
    contain (default :func:`default_gap` of the window).
    """
    if not (window > 0 and math.isfinite(window)):
        raise AlertsInputError(f"window must be a positive number of seconds, got {window}")
    if detections.height == 0:
        return []
    w = max(1, int(round(window)))
    gap = default_gap(w) if gap is None else gap
    check_gap(gap, w)
    pair = ["attack_class", "src", "dst"]
    keys = [*pair, "_burst"]
    # flows without a time of their own: arrival time (streaming input) or detection time
    fallback = (
        pl.col("arrival").fill_null(detection_time)
        if "arrival" in detections.columns
        else pl.lit(detection_time)
    )
    d = detections.with_columns(
        pl.col("start").is_not_null().alias("_timed"),
        pl.coalesce("start", fallback).alias("_t0"),
    ).with_columns(
        pl.coalesce("last", "_t0").alias("_t1"),
        ((pl.col("_t0") // w) * w).cast(pl.Int64).alias("window_start"),
    )
    # a new burst starts where a flow begins more than one window after all earlier ended
    d = d.sort([*pair, "_t0"], nulls_last=True)
    ended = pl.col("_t1").cum_max().shift(1)
    new_burst = ended.is_null() | ((pl.col("_t0") - ended) > gap)
    d = d.with_columns(new_burst.cast(pl.Int64).cum_sum().over(pair).alias("_burst"))
    groups = d.group_by(keys).agg(
        pl.col("window_start").min(),
        pl.col("window_start").max().alias("last_window_start"),
        pl.len().alias("count"),
        pl.col("_t0").min().alias("first_seen"),
        pl.col("_t1").max().alias("last_seen"),
        pl.col("prob").cast(pl.Float64).mean().alias("prob_mean"),
        pl.col("prob").cast(pl.Float64).max().alias("prob_max"),
        pl.col("sport").drop_nulls().n_unique().alias("src_port_count"),
        pl.col("dport").drop_nulls().n_unique().alias("dst_port_count"),
        pl.col("_timed").all().alias("timed"),
    )
    for cols, limit, name in (
        (["sport"], MAX_PORTS, "src_ports"),
        (["dport"], MAX_PORTS, "dst_ports"),
        (["proto"], MAX_PORTS, "protocols"),
        (["proto", "dport"], MAX_SERVICES, "services"),
    ):
        groups = groups.join(
            _ranked(d, keys, cols, limit, name), on=keys, how="left", nulls_equal=True
        )
    groups = groups.sort(["first_seen", "attack_class", "src", "dst"], nulls_last=True)
    out = []
    for r in groups.iter_rows(named=True):
        first, last = float(r["first_seen"]), float(r["last_seen"])
        out.append(
            AlertGroup(
                attack_class=r["attack_class"],
                src=r["src"],
                dst=r["dst"],
                window_start=int(r["window_start"]),
                window_seconds=w,
                count=int(r["count"]),
                first_seen=first,
                last_seen=max(first, last),
                prob_mean=float(r["prob_mean"]),
                prob_max=float(r["prob_max"]),
                src_ports=tuple(int(p) for p in r["src_ports"] or ()),
                src_port_count=int(r["src_port_count"]),
                dst_ports=tuple(int(p) for p in r["dst_ports"] or ()),
                dst_port_count=int(r["dst_port_count"]),
                protocols=tuple(r["protocols"] or ()),
                services=tuple((s["proto"], s["dport"]) for s in (r["services"] or [])),
                timed=bool(r["timed"]),
                last_window_start=int(r["last_window_start"]),
            )
        )
    return out


def _union(a: tuple, b: tuple, limit: int) -> tuple:
    """``a`` then what ``b`` adds, at most ``limit`` entries."""
    return (a + tuple(x for x in b if x not in set(a)))[:limit]


def _distinct(a_items: tuple, a_n: int, b_items: tuple, b_n: int, union: tuple) -> int:
    """Distinct values of two groups: exact when both lists were complete, else a bound."""
    if a_n == len(a_items) and b_n == len(b_items):
        return len(set(a_items) | set(b_items))
    return max(a_n, b_n, len(union))


def continues(burst: AlertGroup, g: AlertGroup, gap: float) -> bool:
    """Whether ``g`` (later detections of the same pair and class) extends ``burst``."""
    same = (burst.attack_class, burst.src, burst.dst) == (g.attack_class, g.src, g.dst)
    return same and g.first_seen - burst.last_seen <= gap


def merge(burst: AlertGroup, g: AlertGroup) -> AlertGroup:
    """``burst`` extended by the later group ``g`` (streaming: windows close one by one).

    Counts, times and probabilities combine exactly; ports beyond the kept lists cannot
    be, so a distinct-port count is then a lower bound.
    """
    n = burst.count + g.count
    src_ports = _union(burst.src_ports, g.src_ports, MAX_PORTS)
    dst_ports = _union(burst.dst_ports, g.dst_ports, MAX_PORTS)
    return AlertGroup(
        attack_class=burst.attack_class,
        src=burst.src,
        dst=burst.dst,
        window_start=burst.window_start,
        window_seconds=burst.window_seconds,
        count=n,
        first_seen=min(burst.first_seen, g.first_seen),
        last_seen=max(burst.last_seen, g.last_seen),
        prob_mean=(burst.prob_mean * burst.count + g.prob_mean * g.count) / n,
        prob_max=max(burst.prob_max, g.prob_max),
        src_ports=src_ports,
        src_port_count=_distinct(
            burst.src_ports, burst.src_port_count, g.src_ports, g.src_port_count, src_ports
        ),
        dst_ports=dst_ports,
        dst_port_count=_distinct(
            burst.dst_ports, burst.dst_port_count, g.dst_ports, g.dst_port_count, dst_ports
        ),
        protocols=_union(burst.protocols, g.protocols, MAX_PORTS),
        services=_union(burst.services, g.services, MAX_SERVICES),
        timed=burst.timed and g.timed,
        last_window_start=max(
            burst.window_end - burst.window_seconds, g.window_end - g.window_seconds
        ),
    )


def to_json(g: AlertGroup) -> str:
    return json.dumps(asdict(g), separators=(",", ":"))


def from_json(text: str) -> AlertGroup:
    d = json.loads(text)
    for name in ("src_ports", "dst_ports", "protocols"):
        d[name] = tuple(d[name])
    d["services"] = tuple(tuple(s) for s in d["services"])
    return AlertGroup(**d)
