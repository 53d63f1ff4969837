"""The slowdown knob: parsed strictly, applied as (factor - 1) x the time the fit took."""

import pytest

from fedids.device import slowdown
from fedids.protocol import ProtocolError


@pytest.mark.parametrize(
    ("spec", "pid", "factor"),
    [
        (None, 0, 1.0),
        ({}, 3, 1.0),
        ({1: 4.0}, 1, 4.0),
        ({"1": 4}, 1, 4.0),  # keys become text after a JSON/YAML round trip
        ({1: 4.0}, 0, 1.0),
        ([1.0, 2.5], 1, 2.5),
        ([1.0, 2.5], 5, 1.0),
    ],
)
def test_factor_by_partition(spec, pid, factor):
    assert slowdown.slowdown_factor(spec, pid) == factor


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({1: 0.5}, r"outside \[1, 50\]"),
        ({1: 1000}, r"outside \[1, 50\]"),
        ({"x": 2.0}, "not a partition id"),
        ({1: "fast"}, "not a number"),
        ("4x", "must map partition ids"),
    ],
)
def test_bad_factors_are_refused_with_one_line(spec, match):
    with pytest.raises(ProtocolError, match=match):
        slowdown.slowdown_factor(spec, 1)


def test_pause_is_factor_minus_one_times_the_work(monkeypatch):
    slept = []
    monkeypatch.setattr(slowdown.time, "sleep", slept.append)
    cfg = {"aggregation": {"slowdown": {1: 4.0}}}
    assert slowdown.pause_for_slowdown(cfg, 1, 0.5) == pytest.approx(1.5)
    assert slowdown.pause_for_slowdown(cfg, 0, 0.5) == 0.0
    assert slowdown.pause_for_slowdown({}, 1, 0.5) == 0.0
    assert slept == [pytest.approx(1.5)]


def test_base_seconds_pin_the_simulated_speeds(monkeypatch):
    slept = []
    monkeypatch.setattr(slowdown.time, "sleep", slept.append)
    cfg = {"aggregation": {"slowdown": {1: 4.0}, "slowdown_base_seconds": 2.0}}
    assert slowdown.pause_for_slowdown(cfg, 0, 0.5) == pytest.approx(1.5)  # 2 s in all
    assert slowdown.pause_for_slowdown(cfg, 1, 0.5) == pytest.approx(7.5)  # 8 s in all
    assert slowdown.pause_for_slowdown(cfg, 1, 3.0) == pytest.approx(9.0)  # 4 x 3 s
    assert slowdown.pause_for_slowdown(cfg, 0, 3.0) == 0.0
    # a fit of more epochs than local_epochs (a buffered run filling a wait) takes longer
    assert slowdown.pause_for_slowdown(cfg, 0, 0.5, work=1.5) == pytest.approx(2.5)  # 3 s
    assert slowdown.pause_for_slowdown(cfg, 1, 0.5, work=2.0) == pytest.approx(15.5)  # 16 s
    with pytest.raises(ProtocolError, match="slowdown_base_seconds=-1"):
        slowdown.pause_for_slowdown({"aggregation": {"slowdown_base_seconds": -1}}, 0, 1.0)
