"""Wire format: int64 header + fixed-width big-endian uint8 ciphertexts, through .npy."""

from __future__ import annotations

import io

import numpy as np
import pytest

from fedids.crypto import wire
from fedids.crypto.codec import Binding, CodecParams
from fedids.crypto.wire import WireFormatError, WireHeader

B = Binding(run_id=-5, round=3, base_version=2, kind=Binding.MODEL, tag=0)


def npy_round_trip(arrays):
    """What Flower does: each array travels as .npy bytes."""
    out = []
    for a in arrays:
        buf = io.BytesIO()
        np.save(buf, a, allow_pickle=False)
        out.append(np.load(io.BytesIO(buf.getvalue()), allow_pickle=False))
    return out


def test_v2_header_round_trip_is_exact():
    p = CodecParams(key_bits=2048, clip=0.1 + 0.2, max_multiplier=3)
    h = WireHeader.for_update(p, B, 5125, key_id=-12345)
    arr = h.to_array()
    assert arr.dtype == np.int64 and arr.shape == (wire.HEADER_LEN,) == (18,)
    back = WireHeader.from_array(npy_round_trip([arr])[0])
    assert back == h and back.clip == 0.1 + 0.2 and back.binding == B
    assert back.n_ciphertexts == p.n_model_ciphertexts(5125) and not back.is_aggregate
    back.check_against(p)
    agg = h.aggregate(Binding(-5, 3, 2, Binding.MODEL), 4)
    assert agg.is_aggregate and agg.n_updates == 4
    WireHeader.from_array(agg.to_array()).check_against(p)
    counts = WireHeader.for_update(p, Binding(1, 0, 0, Binding.STATS, tag=1), 30, key_id=1)
    assert counts.n_ciphertexts == p.n_count_ciphertexts(30)


@pytest.mark.parametrize(
    "change, words",
    [
        ({"value_bits": 12}, "value_bits=12 (expected 16)"),
        ({"max_clients": 64}, "max_clients=64 (expected 128)"),
        ({"max_multiplier": 2}, "max_multiplier=2"),
        ({"count_bits": 16}, "count_bits=16"),
        ({"clip": 2.0}, "clip=2.0"),
        ({"n_ciphertexts": 3}, "n_ciphertexts=3 for 100 values"),
        ({"n_updates": 2}, "n_updates=2 in an update"),
        ({"role": 7}, "role=7"),
    ],
)
def test_v2_header_mismatch_is_reported(change, words):
    p = CodecParams(key_bits=2048)
    h = WireHeader.for_update(p, B, 100, key_id=1)
    with pytest.raises(WireFormatError) as err:
        WireHeader(**{**h.__dict__, **change}).check_against(p)
    assert words in str(err.value)


def small_payload():
    h = WireHeader.for_update(CodecParams(key_bits=512), B, 30, key_id=7)
    cts = list(range(3, 3 + h.n_ciphertexts))
    return h, cts, wire.encode_payload(h, cts)


def test_another_protocol_version_is_refused_by_name():
    _, _, arrays = small_payload()
    old = arrays[0].copy()
    old[1] = 1
    with pytest.raises(WireFormatError, match="protocol version 1"):
        wire.decode_payload([old, arrays[1]])
    bad_kind = arrays[0].copy()
    bad_kind[15] = 9
    with pytest.raises(WireFormatError, match="kind=9"):
        wire.decode_payload([bad_kind, arrays[1]])


def test_ciphertexts_are_fixed_width_big_endian():
    arr = wire.ciphertexts_to_array([1, 2**64 + 5, 2**4095], 2048)
    assert arr.dtype == np.uint8 and arr.shape == (3, 512)
    assert arr[0, -1] == 1 and not arr[0, :-1].any()
    assert arr[2, 0] == 0x80
    h = WireHeader.for_update(CodecParams(key_bits=2048), B, 100, key_id=0)
    h = WireHeader(**{**h.__dict__, "n_ciphertexts": 3})
    assert wire.array_to_ciphertexts(arr, h) == [1, 2**64 + 5, 2**4095]
    with pytest.raises(ValueError, match="does not fit"):
        wire.ciphertexts_to_array([2**4096], 2048)


def test_payload_round_trip_through_npy():
    h, cts, arrays = small_payload()
    arrays = npy_round_trip(arrays)
    assert wire.is_encrypted_payload(arrays)
    assert wire.decode_payload(arrays) == (h, cts)


@pytest.mark.parametrize(
    "mutate, words",
    [
        (lambda a: [a[0]], "expected 2 arrays"),
        (lambda a: [a[0].astype(np.int32), a[1]], "header must be 1-D int64"),
        (lambda a: [a[0][:-1], a[1]], "header must have 18 fields"),
        (lambda a: [np.concatenate([[1], a[0][1:]]), a[1]], "magic"),
        (lambda a: [a[0], a[1].astype(np.int16)], "must be uint8"),
        (lambda a: [a[0], a[1][:, :-1]], "must be uint8 of shape"),
        (lambda a: [a[0], a[1][:1]], "must be uint8 of shape"),
    ],
)
def test_malformed_payloads_are_refused(mutate, words):
    _, _, arrays = small_payload()
    with pytest.raises(WireFormatError, match=words):
        wire.decode_payload(mutate(arrays))


def test_is_encrypted_payload_tells_plain_weights_apart():
    _, _, arrays = small_payload()
    assert wire.is_encrypted_payload(arrays)
    plain = [np.zeros((41, 64), np.float32), np.zeros(64, np.float32)]
    assert not wire.is_encrypted_payload(plain)
    assert not wire.is_encrypted_payload([np.zeros(12, np.int64), np.zeros((2, 8), np.uint8)])
    assert not wire.is_encrypted_payload([])
