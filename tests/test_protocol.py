"""Messages between server and devices: checked like any untrusted input."""

import io

import numpy as np
import pytest

from fedids import protocol
from fedids.protocol import ProtocolError


def test_read_config_checks_types_and_ranges():
    ins = protocol.read_config({"phase": "train", "server_round": 3, "local_epochs": 2}, "train")
    assert (ins.phase, ins.round, ins.local_epochs) == ("train", 3, 2)
    for bad in (
        {"phase": "shell"},
        {"server_round": "3"},
        {"server_round": -1},
        {"local_epochs": 10**6},
        {"local_epochs": True},
        {"report_payload": "text"},
        {"run_path": 5},
    ):
        with pytest.raises(ProtocolError):
            protocol.read_config(bad, "train")


def test_plain_counts_carry_their_binding():
    payload = protocol.plain_counts_payload(np.array([3, 0, 7]), kind=2, tag=0, run_id=9, round=0)
    vec = protocol.read_plain_counts(payload, kind=2, tag=0, run_id=9, round=0)
    assert vec.tolist() == [3, 0, 7]
    with pytest.raises(ProtocolError, match="run 9"):
        protocol.read_plain_counts(payload, kind=2, tag=0, run_id=8, round=0)
    with pytest.raises(ProtocolError, match="kind"):
        protocol.read_plain_counts(payload, kind=3, tag=0, run_id=9, round=0)
    with pytest.raises(ValueError):
        protocol.plain_counts_payload(np.array([-1]), kind=2, tag=0, run_id=9, round=0)


def test_sum_plain_counts():
    a = protocol.plain_counts_payload(np.array([1, 2]), kind=3, tag=4, run_id=1, round=4)
    b = protocol.plain_counts_payload(np.array([10, 20]), kind=3, tag=4, run_id=1, round=4)
    total = protocol.sum_plain_counts([a, b], kind=3, tag=4, run_id=1, round=4)
    assert total[1].tolist() == [11, 22]


def test_bytes_round_trip_and_pickles_refused():
    arrays = [np.arange(3, dtype=np.int64), np.ones((2, 2), dtype=np.uint8)]
    back = protocol.bytes_to_arrays(protocol.arrays_to_bytes(arrays))
    assert all(np.array_equal(x, y) for x, y in zip(arrays, back, strict=True))
    buf = io.BytesIO()
    np.savez(buf, np.array([{"evil": 1}], dtype=object))
    with pytest.raises(ProtocolError):
        protocol.bytes_to_arrays(buf.getvalue())
    with pytest.raises(ProtocolError):
        protocol.bytes_to_arrays(b"not an archive")


def test_eval_vector_round_trip_and_checks():
    cm = np.array([[5, 1], [2, 7]])
    vec = protocol.eval_vector(cm, loss_sum=3.5, clipped=4)
    totals = protocol.read_eval_vector(vec, 2)
    assert totals.records == 15 and totals.clipped == 4
    assert totals.loss == pytest.approx(3.5 / 15, abs=1 / protocol.LOSS_SCALE)
    assert np.array_equal(totals.confusion, cm)
    back = protocol.eval_totals_from_json(totals.to_json(), 2)
    assert back.records == 15
    bad = vec.copy()
    bad[0] += 1
    with pytest.raises(ProtocolError, match="add up"):
        protocol.read_eval_vector(bad, 2)
    with pytest.raises(ProtocolError):
        protocol.read_eval_vector(vec, 3)


def test_flower_run_ids_fit_the_int64_header():
    big = 2**64 - 5
    assert protocol.wire_run_id(big) == -5
    assert protocol.wire_run_id(12) == 12
    payload = protocol.plain_counts_payload(
        np.array([1]), kind=2, tag=0, run_id=protocol.wire_run_id(big), round=0
    )
    assert int(payload[0][3]) == -5
