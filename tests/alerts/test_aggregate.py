"""Grouping detections per (class, source, destination, burst)."""

from __future__ import annotations

from dataclasses import replace

import polars as pl
import pytest

from fedids.alerts.aggregate import (
    MAX_PORTS,
    aggregate,
    continues,
    default_gap,
    from_json,
    merge,
    to_json,
)
from fedids.alerts.bursts import OpenBursts
from fedids.alerts.errors import AlertsInputError


def table(**cols):
    n = len(next(iter(cols.values()))) if cols else 1
    base = {
        "src": ["10.0.0.1"] * n,
        "dst": ["10.0.0.2"] * n,
        "sport": [40000] * n,
        "dport": [502] * n,
        "proto": ["tcp"] * n,
        "start": [1000.0] * n,
        "last": [1001.0] * n,
        "attack_class": ["DoS"] * n,
        "prob": [0.9] * n,
    }
    base.update(cols)
    schema = {
        "src": pl.String,
        "dst": pl.String,
        "sport": pl.Int64,
        "dport": pl.Int64,
        "proto": pl.String,
        "start": pl.Float64,
        "last": pl.Float64,
        "attack_class": pl.String,
        "prob": pl.Float32,
    }
    return pl.DataFrame(base, schema=schema)


def test_groups_by_class_src_dst_and_burst():
    t = table(
        attack_class=["DoS", "DoS", "Reconn", "DoS", "DoS", "DoS"],
        dst=["10.0.0.2", "10.0.0.2", "10.0.0.2", "10.0.0.3", "10.0.0.2", "10.0.0.2"],
        start=[1000.0, 1010.0, 1000.0, 1000.0, 1090.0, 1500.0],
        last=[1001.0, 1015.0, 1001.0, 1001.0, 1091.0, 1501.0],
    )
    groups = aggregate(t, 60, detection_time=5000.0)
    keys = {(g.attack_class, g.dst, g.window_start): g.count for g in groups}
    assert keys == {
        ("DoS", "10.0.0.2", 960): 3,  # 1090 is 75 s after the last end: the burst goes on
        ("Reconn", "10.0.0.2", 960): 1,
        ("DoS", "10.0.0.3", 960): 1,
        ("DoS", "10.0.0.2", 1500): 1,  # 409 s of silence (> 5 windows): a new burst
    }
    [g] = [g for g in groups if (g.attack_class, g.dst, g.window_start) == ("DoS", "10.0.0.2", 960)]
    assert (g.first_seen, g.last_seen) == (1000.0, 1091.0)
    assert g.window_seconds == 60 and g.timed
    assert (g.last_window_start, g.window_end, g.windows) == (1080, 1140, 3)


def test_a_burst_across_many_windows_is_one_group():
    starts = [10_000.0 + 45 * i for i in range(100)]  # 75 minutes, a flow every 45 s
    g = aggregate(table(start=starts, last=[s + 1 for s in starts]), 60, 0.0)
    assert [(x.count, x.first_seen, x.last_seen) for x in g] == [(100, 10_000.0, 14_456.0)]
    assert g[0].windows == 75
    sparse = [10_000.0 + 200 * i for i in range(5)]  # 200 s between flows
    assert len(aggregate(table(start=sparse, last=sparse), 60, 0.0)) == 1  # default gap 300 s
    assert len(aggregate(table(start=sparse, last=sparse), 60, 0.0, gap=120)) == 5


def test_burst_gap_shorter_than_the_window_is_refused():
    with pytest.raises(AlertsInputError, match="burst-gap"):
        aggregate(table(), 60, 0.0, gap=30)


def test_merge_extends_a_burst_like_one_aggregation():
    """Streaming closes windows one by one; merging gives what one aggregation gives."""
    starts = [10_000.0 + 30 * i for i in range(20)]
    ports = [40000 + i % 3 for i in range(20)]
    t = table(start=starts, last=[s + 1 for s in starts], sport=ports, prob=[0.5, 1.0] * 10)
    [whole] = aggregate(t, 60, 0.0)
    [a] = aggregate(t.head(8), 60, 0.0)
    [b] = aggregate(t.tail(12), 60, 0.0)
    assert continues(a, b, default_gap(60))
    assert not continues(a, replace(b, src="10.9.9.9"), default_gap(60))
    assert not continues(a, replace(b, first_seen=a.last_seen + 301), default_gap(60))
    m = merge(a, b)
    fields = ("count", "first_seen", "last_seen", "window_start", "last_window_start", "prob_max")
    assert [getattr(m, f) for f in fields] == [getattr(whole, f) for f in fields]
    assert m.prob_mean == pytest.approx(whole.prob_mean)
    assert set(m.src_ports) == set(whole.src_ports) and m.src_port_count == 3
    assert from_json(to_json(m)) == m


def test_probability_mean_and_max():
    g = aggregate(table(prob=[0.6, 0.8, 1.0]), 60, 0.0)[0]
    assert g.prob_mean == pytest.approx(0.8, abs=1e-6)
    assert g.prob_max == pytest.approx(1.0)


def test_flows_without_times_use_detection_time():
    t = table(start=[None, None], last=[None, None])
    g = aggregate(t, 60, detection_time=1234.5)[0]
    assert (g.first_seen, g.last_seen) == (1234.5, 1234.5)
    assert g.window_start == 1200 and not g.timed


def test_missing_addresses_are_their_own_group():
    t = table(src=[None, None, "10.0.0.1"], dst=[None, None, "10.0.0.2"])
    groups = aggregate(t, 60, 0.0)
    assert sorted((g.src or "", g.count) for g in groups) == [("", 2), ("10.0.0.1", 1)]


def test_ports_ranked_by_frequency_and_capped():
    dports = [80, 80, 443, 443, 443, 22] + list(range(1000, 1000 + MAX_PORTS + 10))
    t = table(dport=dports, sport=[1] * len(dports), proto=["tcp"] * len(dports))
    g = aggregate(t, 60, 0.0)[0]
    assert g.dst_ports[:3] == (443, 80, 22)
    assert len(g.dst_ports) == MAX_PORTS and g.dst_port_count == MAX_PORTS + 13
    assert g.src_ports == (1,) and g.src_port_count == 1
    assert g.services[0] == ("tcp", 443)


def test_last_seen_never_before_first_seen():
    g = aggregate(table(start=[1000.0], last=[900.0]), 60, 0.0)[0]
    assert g.last_seen == g.first_seen == 1000.0


def test_digest_is_stable_and_content_sensitive():
    a = aggregate(table(prob=[0.9, 0.8]), 60, 0.0)[0]
    b = aggregate(table(prob=[0.9, 0.8]), 60, 0.0)[0]
    c = aggregate(table(prob=[0.9, 0.8, 0.7]), 60, 0.0)[0]
    assert a.digest() == b.digest() != c.digest()


def test_empty_and_bad_window():
    assert aggregate(table().head(0), 60, 0.0) == []
    with pytest.raises(AlertsInputError):
        aggregate(table(), 0, 0.0)


def test_open_bursts_survive_a_restart():
    starts = [10_000.0 + 30 * i for i in range(10)]
    t = table(start=starts, last=starts)
    [first] = aggregate(t.head(4), 60, 0.0)
    [later] = aggregate(t.tail(6), 60, 0.0)
    bursts = OpenBursts("p:", 300.0, {})
    out, saved = bursts.extend([first])
    assert out == [first] and list(saved) == ["p:DoS|10.0.0.1|10.0.0.2"]
    restarted = OpenBursts("p:", 300.0, saved)  # what the outbox's meta table gives back
    [extended], _ = restarted.extend([later])
    assert (extended.window_start, extended.count) == (first.window_start, 10)
    assert restarted.prune(watermark=extended.last_seen + 299) == {}
    assert restarted.prune(watermark=extended.last_seen + 301) == {"p:DoS|10.0.0.1|10.0.0.2": None}
    assert len(restarted) == 0
