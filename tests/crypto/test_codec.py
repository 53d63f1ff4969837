"""CodecParams (protocol v2): validation refuses anything that could overflow, config parsing."""

from __future__ import annotations

import pytest

from fedids.crypto.codec import CodecConfigError, CodecParams


def test_defaults():
    p = CodecParams().validate()
    assert (p.key_bits, p.value_bits, p.clip, p.max_clients, p.max_multiplier, p.count_bits) == (
        2048,
        16,
        4.0,
        128,
        1,
        32,
    )
    assert p.step == pytest.approx(8.0 / 65535)
    assert p.n_model_ciphertexts(5125) == 58
    assert p.n_count_ciphertexts(52 - 3) == 1 and p.n_count_ciphertexts(52 - 2) == 2


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"key_bits": 256}, "key_bits=256 is out of range"),
        ({"value_bits": 1}, "value_bits=1 is out of range"),
        ({"value_bits": 33}, "value_bits=33 is out of range"),
        ({"max_clients": 0}, "max_clients=0 is out of range"),
        ({"max_multiplier": 0}, "max_multiplier=0 is out of range"),
        ({"count_bits": 0}, "count_bits=0 is out of range"),
        ({"count_bits": 53}, "count_bits=53 is out of range"),
        ({"clip": 0.0}, "clip=0.0"),
        ({"clip": float("inf")}, "clip=inf"),
        ({"clip": float("nan")}, "clip=nan"),
        ({"key_bits": 2048.0}, "key_bits must be an integer"),
        ({"max_clients": True}, "max_clients must be an integer"),
        ({"count_bits": 52, "max_clients": 2**20}, "count slots of 72 bits exceed 62"),
        ({"value_bits": 32, "max_clients": 2**20, "max_multiplier": 2**10}, "exceed 52"),
    ],
)
def test_validate_refuses_overflowing_or_out_of_range(kwargs, words):
    with pytest.raises(CodecConfigError) as err:
        CodecParams(**kwargs).validate()
    assert words in str(err.value)


MODE = {"key_bits": 2048, "value_bits": 16, "clip": 4.0, "max_clients": 128}


def test_from_config_defaults_and_production_keys():
    p = CodecParams.from_config(MODE)
    assert p == CodecParams()
    q = CodecParams.from_config({**MODE, "max_multiplier": 4, "count_bits": 40, "key_bits": 3072})
    assert (q.max_multiplier, q.count_bits, q.key_bits) == (4, 40, 3072)
    with pytest.raises(CodecConfigError, match="key_bits=1024"):
        CodecParams.from_config({**MODE, "key_bits": 1024})
    with pytest.raises(CodecConfigError, match="lacks 'max_clients'"):
        CodecParams.from_config({k: v for k, v in MODE.items() if k != "max_clients"})
    with pytest.raises(CodecConfigError, match="mode config"):
        CodecParams.from_config({**MODE, "value_bits": "many"})


def test_headroom_grows_with_max_clients_and_multiplier():
    base = CodecParams(key_bits=2048).validate().model_layout
    more = CodecParams(key_bits=2048, max_clients=1024).validate().model_layout
    stale = CodecParams(key_bits=2048, max_multiplier=8).validate().model_layout
    assert (base.slot_bits, more.slot_bits, stale.slot_bits) == (23, 26, 26)
    assert more.D >= 512 and stale.D >= 64 and stale.has_meta and not base.has_meta
