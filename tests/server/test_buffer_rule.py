"""The buffered trigger rule and staleness weights (pure functions, no timing)."""

import pytest

from fedids.server import buffer_rule as rule

AGG = {
    "buffer_size": 3,
    "max_staleness": 1,
    "staleness_exponent": 0.5,
    "max_multiplier": 4,
    "time_factor": 1.0,
    "response_smoothing": 0.5,
}


def settings(num_devices=4, min_updates=2, **over):
    return rule.BufferSettings.from_config(
        {**AGG, **over}, num_devices=num_devices, min_updates=min_updates
    )


def view(**over):
    base = dict(
        version=3,
        final=False,
        buffered=2,
        in_flight_bases=[3, 3],
        since_version=1.0,
        threshold=10.0,
        min_updates=2,
    )
    base.update(over)
    return rule.BufferView(**base)


def test_default_buffer_size_is_all_devices_but_one_and_at_least_the_minimum():
    assert settings(buffer_size=None).buffer_size == 3
    assert settings(buffer_size=None, num_devices=2).buffer_size == 2
    assert settings(buffer_size=9).buffer_size == 4  # never more than the devices


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("buffer_size", 1, "below federation.min_fit_clients"),
        ("max_staleness", -1, "aggregation.max_staleness=-1 is out of range"),
        ("max_multiplier", 0, "aggregation.max_multiplier=0 is out of range"),
        ("max_multiplier", 2.5, "aggregation.max_multiplier must be an integer"),
        ("time_factor", "soon", "aggregation.time_factor must be a number"),
    ],
)
def test_bad_settings_name_the_key(key, value, match):
    with pytest.raises(rule.BufferConfigError, match=match):
        settings(**{key: value})


def test_full_buffer_triggers():
    assert rule.decide(view(buffered=3, in_flight_bases=[3]), settings()) == "buffer_full"


def test_time_threshold_triggers_with_fewer_than_k_updates():
    s = settings()
    assert rule.decide(view(since_version=9.9), s) is None
    assert rule.decide(view(since_version=10.0), s) == "time_threshold"
    assert rule.seconds_until_time_trigger(view(since_version=4.0), s) == pytest.approx(6.0)
    # unknown response times: no time trigger (and no wake-up for it)
    assert rule.decide(view(since_version=99.0, threshold=None), s) is None
    assert rule.seconds_until_time_trigger(view(threshold=None), s) is None


def test_never_below_the_minimum_number_of_updates():
    s = settings()
    v = view(buffered=1, since_version=99.0, in_flight_bases=[])
    assert rule.decide(v, s) is None
    assert rule.seconds_until_time_trigger(v, s) is None


def test_nothing_on_its_way_aggregates_at_once():
    assert rule.decide(view(in_flight_bases=[], since_version=0.0), settings()) == "all_arrived"


def test_waits_rather_than_strand_a_device_past_max_staleness():
    s = settings()
    # a device still training on version 2: version 4 now, then it could only join version 5
    # with staleness 2 > 1, so the server waits for it even with a full buffer
    stranding = view(version=3, buffered=3, in_flight_bases=[2], since_version=99.0)
    assert rule.stranded(stranding, s)
    assert rule.decide(stranding, s) is None
    assert rule.seconds_until_time_trigger(stranding, s) is None
    # a device training on version 3 can still join version 5 with staleness 1
    assert rule.decide(view(version=3, buffered=3, in_flight_bases=[3]), s) == "buffer_full"
    # with max_staleness 2 the same wait is not needed
    assert rule.decide(stranding, settings(max_staleness=2)) == "buffer_full"


def test_the_last_version_waits_for_everything_on_its_way():
    s = settings()
    assert rule.decide(view(final=True, buffered=3, since_version=99.0), s) is None
    assert rule.decide(view(final=True, buffered=3, in_flight_bases=[]), s) == "final"


def test_staleness_acceptance_window():
    s = settings(max_staleness=2)
    assert rule.staleness_problem(5, 4, s) is None  # trained on the newest
    assert rule.staleness_problem(5, 2, s) is None  # 2 versions old
    assert "max_staleness=2" in rule.staleness_problem(5, 1, s)
    assert "does not exist" in rule.staleness_problem(5, 5, s)


def test_staleness_multipliers_are_integers_within_the_codec_bound():
    s = settings()
    assert [rule.staleness_multiplier(k, s) for k in range(5)] == [4, 3, 2, 2, 2]
    for m in (1, 2, 4, 7, rule.MAX_MULTIPLIER_LIMIT):
        for exponent in (0.0, 0.5, 1.0, 3.0):
            cfg = settings(max_multiplier=m, staleness_exponent=exponent)
            weights = [rule.staleness_multiplier(k, cfg) for k in range(rule.MAX_STALENESS_LIMIT)]
            assert all(isinstance(w, int) and 1 <= w <= m for w in weights)
            assert weights == sorted(weights, reverse=True)  # staler never weighs more
            assert weights[0] == m
    with pytest.raises(ValueError):
        rule.staleness_multiplier(-1, s)


def test_weighted_average_time_uses_data_size_and_lower_bounds():
    times = rule.ResponseTimes(smoothing=0.5)
    assert times.weighted_average(["a", "b"], {}) is None
    times.observe("a", 2.0, weight=100)
    times.observe("b", 8.0, weight=300)
    assert times.weighted_average(["a", "b"], {}) == pytest.approx((200 + 2400) / 400)
    times.observe("a", 4.0, weight=100)  # moving average: 0.5 * 4 + 0.5 * 2
    assert times.seconds["a"] == pytest.approx(3.0)
    # a device never heard from counts with how long it has been working so far
    assert times.weighted_average(["a", "c"], {"c": 5.0}) == pytest.approx(
        (100 * 3.0 + 1 * 5.0) / 101
    )


def test_no_time_threshold_until_a_buffer_of_devices_has_answered():
    """First version: three fast devices started together, two have answered. Their lower
    bounds would make T_W the elapsed time, firing before the third (0.3 s later) arrives."""
    times = rule.ResponseTimes(smoothing=0.5)
    times.observe("fast1", 3.4)
    times.observe("fast2", 3.45)
    devices = ["fast1", "fast2", "fast3", "slow"]
    working = {"fast3": 3.45, "slow": 3.45}
    assert times.weighted_average(devices, working, min_known=3) is None
    assert times.weighted_average(devices, working, min_known=2) == pytest.approx(3.4375)
    view = rule.BufferView(
        version=0,
        final=False,
        buffered=2,
        in_flight_bases=[0, 0],
        since_version=3.45,
        threshold=times.weighted_average(devices, working, min_known=3),
        min_updates=2,
    )
    assert rule.decide(view, settings(buffer_size=3)) is None
    times.observe("fast3", 3.7)
    working = {"slow": 3.7}
    threshold = times.weighted_average(devices, working, min_known=3)
    assert threshold == pytest.approx((3.4 + 3.45 + 3.7 + 3.7) / 4)


def test_a_device_that_would_wait_is_given_epochs_that_fit_the_wait():
    # 2 epochs took 5 s (2.5 s per epoch, fixed costs included); the slow device is 9.8 s away
    assert rule.epochs_to_fill(2, 9.8, 2.5, factor=2) == 3  # floor(0.85 * 9.8 / 2.5)
    assert rule.epochs_to_fill(2, 30.0, 2.5, factor=2) == 4  # at most factor x local_epochs
    assert rule.epochs_to_fill(2, 30.0, 2.5, factor=3) == 6
    assert rule.epochs_to_fill(2, 2.0, 2.5, factor=2) == 2  # never fewer than local_epochs
    for unknown in ((None, 2.5), (9.8, None), (0.0, 2.5), (-3.0, 2.5)):
        assert rule.epochs_to_fill(2, *unknown, factor=2) == 2
    assert rule.epochs_to_fill(2, 30.0, 2.5, factor=1) == 2  # 1: off
    # 2 s per fit besides training (decryption, evaluation), 1.5 s per epoch, 8 s to wait
    assert rule.epochs_to_fill(2, 8.0, 1.5, factor=2, fixed_seconds=2.0) == 3
    assert rule.epochs_to_fill(2, 8.0, 1.5, factor=2, fixed_seconds=5.0) == 2
    # never more than a device accepts (protocol.MAX_LOCAL_EPOCHS), never below local_epochs
    assert rule.epochs_to_fill(600, 1e6, 1.0, factor=2, ceiling=1000) == 1000
    assert rule.epochs_to_fill(600, 1e6, 1.0, factor=2, ceiling=500) == 600


def test_idle_epochs_factor_is_checked_and_defaults_to_off():
    assert settings().idle_epochs_factor == 1  # AGG does not name it
    assert settings(idle_epochs_factor=3).idle_epochs_factor == 3
    for bad in (0, 2.5, "2", rule.MAX_IDLE_EPOCHS_FACTOR + 1):
        with pytest.raises(rule.BufferConfigError, match="idle_epochs_factor"):
            settings(idle_epochs_factor=bad)
