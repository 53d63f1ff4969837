"""Group detections into alerts a person can act on.

One alert per (attack class, source address, destination address, time window) instead of
one per flow: a DoS burst of 50,000 flows is one alert with a count, not 50,000 messages.
Windows are aligned to multiples of the window length in epoch seconds, so the same flows
always fall into the same window and give the same alert id.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass

import polars as pl

from fedids.alerts.errors import AlertsInputError

#: ports/services kept per alert (a port scan touches thousands; the count says how many)
MAX_PORTS = 64
MAX_SERVICES = 16


@dataclass(frozen=True)
class AlertGroup:
    """Detections of one class between one source and one destination in one window."""

    attack_class: str
    src: str | None
    dst: str | None
    window_start: int  # epoch seconds, a multiple of window_seconds
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


def aggregate(detections: pl.DataFrame, window: float, detection_time: float) -> list[AlertGroup]:
    """Group a detections table (see :func:`fedids.alerts.flows.detections_table`).

    First/last seen come from the flows' start/last times; flows without times count as
    seen at their ``arrival`` column if there is one, else at ``detection_time``.
    """
    if not (window > 0 and math.isfinite(window)):
        raise AlertsInputError(f"window must be a positive number of seconds, got {window}")
    if detections.height == 0:
        return []
    w = max(1, int(round(window)))
    keys = ["attack_class", "src", "dst", "window_start"]
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
    groups = d.group_by(keys).agg(
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
            )
        )
    return out
