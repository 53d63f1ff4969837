"""Wire format: int64 header + fixed-width big-endian uint8 ciphertexts, through .npy."""

from __future__ import annotations

import io

import numpy as np
import pytest

from fedids.crypto import wire
from fedids.crypto.codec import CodecParams
from fedids.crypto.wire import Header, WireFormatError


def npy_round_trip(arrays):
    """What Flower does: each array travels as .npy bytes."""
    out = []
    for a in arrays:
        buf = io.BytesIO()
        np.save(buf, a, allow_pickle=False)
        out.append(np.load(io.BytesIO(buf.getvalue()), allow_pickle=False))
    return out


def test_header_round_trip_is_exact():
    p = CodecParams(key_bits=2048, clip=0.1 + 0.2)  # a clip with no short decimal form
    h = Header.for_update(p, 5125, key_id=-12345)
    arr = h.to_array()
    assert arr.dtype == np.int64 and arr.shape == (wire.HEADER_LEN,)
    back = Header.from_array(npy_round_trip([arr])[0])
    assert back == h and back.clip == 0.1 + 0.2
    assert back.n_ciphertexts == 58 and back.weight_sum == 0
    back.check_against(p)


def test_header_mismatch_is_reported():
    p = CodecParams(key_bits=2048)
    h = Header.for_update(p, 100, key_id=1)
    with pytest.raises(WireFormatError, match="value_bits=16 \\(expected 12\\)"):
        h.check_against(CodecParams(key_bits=2048, value_bits=12))
    with pytest.raises(WireFormatError, match="clip"):
        h.check_against(CodecParams(key_bits=2048, clip=2.0))
    bad = Header(**{**h.__dict__, "n_ciphertexts": 3})
    with pytest.raises(WireFormatError, match="n_ciphertexts=3"):
        bad.check_against(p)


def test_ciphertexts_are_fixed_width_big_endian():
    arr = wire.ciphertexts_to_array([1, 2**64 + 5, 2**4095], 2048)
    assert arr.dtype == np.uint8 and arr.shape == (3, 512)
    assert arr[0, -1] == 1 and not arr[0, :-1].any()
    assert arr[2, 0] == 0x80
    h = Header.for_update(CodecParams(key_bits=2048), 89 * 3, key_id=0)
    assert wire.array_to_ciphertexts(arr, h) == [1, 2**64 + 5, 2**4095]
    with pytest.raises(ValueError, match="does not fit"):
        wire.ciphertexts_to_array([2**4096], 2048)


def test_payload_round_trip_through_npy():
    p = CodecParams(key_bits=512)
    h = Header.for_update(p, 30, key_id=7)
    cts = [3, 5]
    assert h.n_ciphertexts == 2
    arrays = npy_round_trip(wire.pack_payload(h, cts))
    assert wire.is_encrypted_payload(arrays)
    assert wire.unpack_payload(arrays) == (h, cts)


@pytest.mark.parametrize(
    "mutate, words",
    [
        (lambda a: [a[0]], "expected 2 arrays"),
        (lambda a: [a[0].astype(np.int32), a[1]], "header must be int64"),
        (lambda a: [a[0][:-1], a[1]], "header must be int64"),
        (lambda a: [np.concatenate([[1], a[0][1:]]), a[1]], "magic"),
        (lambda a: [a[0], a[1].astype(np.int16)], "must be uint8"),
        (lambda a: [a[0], a[1][:, :-1]], "must be uint8 of shape"),
        (lambda a: [a[0], a[1][:1]], "must be uint8 of shape"),
    ],
)
def test_malformed_payloads_are_refused(mutate, words):
    p = CodecParams(key_bits=512)
    arrays = wire.pack_payload(Header.for_update(p, 30, key_id=7), [3, 5])
    with pytest.raises(WireFormatError, match=words):
        wire.unpack_payload(mutate(arrays))


def test_is_encrypted_payload_tells_plain_weights_apart():
    p = CodecParams(key_bits=512)
    arrays = wire.pack_payload(Header.for_update(p, 30, key_id=7), [3, 5])
    assert wire.is_encrypted_payload(arrays)
    plain = [np.zeros((41, 64), np.float32), np.zeros(64, np.float32)]
    assert not wire.is_encrypted_payload(plain)
    assert not wire.is_encrypted_payload([np.zeros(12, np.int64), np.zeros((2, 8), np.uint8)])
    assert not wire.is_encrypted_payload([])
