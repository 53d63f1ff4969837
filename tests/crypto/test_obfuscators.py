"""Obfuscators: fixed-base short-exponent h_s^a (default) and classic r^n, all n-th residues."""

from __future__ import annotations

import math
import secrets
import threading
import time

import gmpy2
import pytest

from fedids.crypto import obfuscators as ob
from fedids.crypto import vector


def _lambda(priv):
    return (priv.p - 1) * (priv.q - 1) // math.gcd(priv.p - 1, priv.q - 1)


@pytest.mark.parametrize("window", [1, 4, 6, 8])
def test_fixed_base_table_matches_powmod(window):
    m = gmpy2.mpz(2**521 - 1)
    t = ob.FixedBaseTable(3, m, 300, window)
    for a in (0, 1, 2**300 - 1, secrets.randbits(300), secrets.randbits(7)):
        assert t.pow(a) == gmpy2.powmod(3, a, m)
    with pytest.raises(ValueError, match="range"):
        t.pow(2**300)


@pytest.mark.parametrize("crt", [False, True])
def test_short_exponent_obfuscators_are_fresh_nth_residues(keys1024, crt):
    pub, priv = keys1024
    base = ob.ShortExponentBase(pub.n, (priv.p, priv.q) if crt else None)
    assert base.exp_bits == 512  # ceil(k/2) for a 1024-bit n
    # the CRT tables are the same h_s as computing modulo n^2 directly
    if crt:
        u, v = (t.rows[0][1] for t in base.tables)
        h_s = int(u + base.p2 * ((v - u) * base.p2_inv % base.q2))
    else:
        h_s = int(base.tables[0].rows[0][1])
    a = secrets.randbits(base.exp_bits)
    assert base.power(a) == pow(h_s, a, pub.nsquare)
    assert pow(h_s, _lambda(priv), pub.nsquare) == 1  # h_s is an n-th residue
    rs = base.draw(8)
    assert len(set(rs)) == 8 and all(0 < r < pub.nsquare for r in rs)
    assert all(pow(r, _lambda(priv), pub.nsquare) == 1 for r in rs)
    ms = [0, 1, pub.n - 1, 2**1000, 5, 6, 7, 8]
    assert [priv.raw_decrypt(c) for c in vector.encrypt_many(pub.n, ms, rs)] == ms


def test_each_encryptor_process_builds_its_base_once(keys512):
    pub, priv = keys512
    got = []
    threads = [
        threading.Thread(target=lambda: got.append(ob.short_exponent_base(pub.n, (priv.p, priv.q))))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(b) for b in got}) == 1
    assert ob.short_exponent_base(pub.n, None) is not got[0]  # public-key-only base apart


def test_store_methods(keys512, monkeypatch):
    pub, priv = keys512
    store = vector.ObfuscatorStore(pub.n, None, (priv.p, priv.q))
    assert store.method == "fixed-base"
    assert len(set(store.take(3)[0])) == 3
    classic = vector.ObfuscatorStore(pub.n, None, None, "classic")
    monkeypatch.setattr(ob, "fixed_base_obfuscators", lambda *a: pytest.fail("wrong method"))
    assert len(classic.take(2)[0]) == 2
    with pytest.raises(ValueError, match="obfuscator method"):
        vector.ObfuscatorStore(pub.n, None, None, "quantum")


def test_keys_are_admissible_and_auto_falls_back_for_older_keys(keys1024):
    from phe import paillier

    from fedids.crypto.codec import CodecParams
    from fedids.crypto.keys import is_admissible
    from fedids.crypto.update import UpdateEncryptor

    pub, priv = keys1024
    assert is_admissible(priv.p, priv.q) and priv.p % 4 == 3 and priv.q % 4 == 3
    params = CodecParams(key_bits=1024).validate()
    assert UpdateEncryptor(pub, params, 1, private_key=priv).obfuscators == "fixed-base"
    assert UpdateEncryptor(pub, params, 1).obfuscators == "fixed-base"  # no factors to check
    while True:  # a phe key (random primes) that is not admissible
        old_pub, old_priv = paillier.generate_paillier_keypair(n_length=1024)
        if not is_admissible(old_priv.p, old_priv.q):
            break
    enc = UpdateEncryptor(old_pub, params, 1, private_key=old_priv)
    assert enc.obfuscators == "classic"


@pytest.mark.parametrize("crt", [False, True])
def test_gil_free_power_is_the_same_obfuscator(keys1024, crt):
    pub, priv = keys1024
    base = ob.ShortExponentBase(pub.n, (priv.p, priv.q) if crt else None)
    exps = [0, 1, secrets.randbits(base.exp_bits), 2**base.exp_bits - 1]
    assert base.powers_gil_free(exps) == [base.power(a) for a in exps]
    with pytest.raises(ValueError, match="range"):
        base.powers_gil_free([1, 2**base.exp_bits])
    rs = base.draw_gil_free(4)
    assert len(set(rs)) == 4 and all(pow(r, _lambda(priv), pub.nsquare) == 1 for r in rs)


def test_background_precompute_uses_powmod_not_the_gil_holding_table(keys512, monkeypatch):
    """The table method holds the GIL for its whole Python loop and stalls a training thread
    beside it; the background thread must use the powmod form (GIL released) instead, while
    what is missing at ``take`` (nobody trains then) still uses the cheaper table."""
    pub, priv = keys512
    store = vector.ObfuscatorStore(pub.n, vector.WorkerPool(2, "thread"), (priv.p, priv.q))
    in_background = threading.Event()

    def table_method(*args):
        if threading.current_thread().name == "fedids-precompute":
            in_background.set()
        return real_table(*args)

    real_table = ob.fixed_base_obfuscators
    monkeypatch.setattr(ob, "fixed_base_obfuscators", table_method)
    store._fn = table_method  # what the store bound at construction
    store.start(6)
    deadline = time.monotonic() + 60
    while len(store._ready) < 6 and time.monotonic() < deadline:  # the background's own work
        time.sleep(0.01)
    got, precomputed = store.take(8)  # 6 from the background, 2 computed now by the table
    assert precomputed == 6 and len(set(got)) == 8
    assert not in_background.is_set()
    store.start(4)
    store.wait()  # a caller that waits does not train: the rest is computed by the table now
    assert len(store._ready) == 4
    assert all(pow(r, _lambda(priv), pub.nsquare) == 1 for r in got)
    assert [priv.raw_decrypt(c) for c in vector.encrypt_many(pub.n, [3] * 8, got)] == [3] * 8
    store.pool.close()
