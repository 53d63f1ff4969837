"""Buffered FedAvg in plain mode: checks on arrival, integer staleness weights on top of n_k."""

import numpy as np
import pytest
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays

from strategies.buffered_fedavg import PlainBuffer, UpdateRejected, buffer_aggregator
from strategies.plain_fedavg import PlainFedAvg


def strategy():
    return PlainFedAvg(run_id=7, max_clients=8, max_num_examples=1000, min_fit_clients=2)


def res(arrays, n):
    return FitRes(Status(Code.OK, ""), ndarrays_to_parameters(arrays), n, {"partition_id": 0})


def model(value):
    return [np.full((2, 3), value, dtype=np.float32), np.full(3, value, dtype=np.float32)]


def test_average_weights_data_size_times_staleness_multiplier():
    buf = buffer_aggregator(strategy(), {"max_multiplier": 4})
    assert isinstance(buf, PlainBuffer)
    fresh = buf.check("a", res(model(1.0), 100), base_version=3)
    stale = buf.check("b", res(model(5.0), 300), base_version=2)
    assert (fresh.base_version, stale.base_version) == (3, 2)
    out = parameters_to_ndarrays(buf.aggregate(4, [fresh, stale], [4, 3]))
    expected = (4 * 100 * 1.0 + 3 * 300 * 5.0) / (4 * 100 + 3 * 300)
    assert all(a.dtype == np.float32 for a in out)
    np.testing.assert_allclose(out[0], np.full((2, 3), expected), rtol=1e-6)
    np.testing.assert_allclose(out[1], np.full(3, expected), rtol=1e-6)


def test_multipliers_outside_the_bound_are_refused():
    buf = buffer_aggregator(strategy(), {"max_multiplier": 2})
    u = buf.check("a", res(model(1.0), 10), base_version=0)
    with pytest.raises(ValueError, match=r"outside \[1, 2\]"):
        buf.aggregate(1, [u], [3])
    with pytest.raises(ValueError, match="multipliers"):
        buf.aggregate(1, [u], [1, 1])


@pytest.mark.parametrize(
    ("arrays", "n", "reason"),
    [
        (model(1.0), 0, "num_examples=0"),
        (model(1.0), 10**6, "federation.max_num_examples"),
        ([np.array([np.nan], dtype=np.float32)], 10, "NaN"),
        ([np.ones(3, dtype=np.int64)], 10, "float32"),
    ],
)
def test_bad_updates_are_rejected_on_arrival(arrays, n, reason):
    buf = buffer_aggregator(strategy(), {"max_multiplier": 4})
    with pytest.raises(UpdateRejected, match=reason):
        buf.check("a", res(arrays, n), base_version=0)


def test_shapes_are_pinned_by_the_first_aggregate():
    buf = buffer_aggregator(strategy(), {"max_multiplier": 1})
    u = buf.check("a", res(model(1.0), 10), base_version=0)
    buf.aggregate(1, [u], [1])
    with pytest.raises(UpdateRejected, match="shapes differ"):
        buf.check("b", res([np.ones((3, 3), dtype=np.float32)], 10), base_version=1)
