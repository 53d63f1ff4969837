"""Grouping detections per (class, source, destination, window)."""

from __future__ import annotations

import polars as pl
import pytest

from fedids.alerts.aggregate import MAX_PORTS, aggregate
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


def test_groups_by_class_src_dst_and_window():
    t = table(
        attack_class=["DoS", "DoS", "Reconn", "DoS", "DoS"],
        dst=["10.0.0.2", "10.0.0.2", "10.0.0.2", "10.0.0.3", "10.0.0.2"],
        start=[1000.0, 1010.0, 1000.0, 1000.0, 1090.0],
        last=[1001.0, 1015.0, 1001.0, 1001.0, 1091.0],
    )
    groups = aggregate(t, 60, detection_time=5000.0)
    keys = {(g.attack_class, g.dst, g.window_start): g.count for g in groups}
    assert keys == {
        ("DoS", "10.0.0.2", 960): 2,
        ("Reconn", "10.0.0.2", 960): 1,
        ("DoS", "10.0.0.3", 960): 1,
        ("DoS", "10.0.0.2", 1080): 1,
    }
    g = next(
        g
        for g in groups
        if g.attack_class == "DoS" and g.window_start == 960 and g.dst == "10.0.0.2"
    )
    assert (g.first_seen, g.last_seen) == (1000.0, 1015.0)
    assert g.window_seconds == 60 and g.timed


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
