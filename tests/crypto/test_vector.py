"""Vector Paillier: compatibility with phe, fresh randomness, precompute, pools."""

from __future__ import annotations

import math
import threading

import pytest

from fedids.crypto import vector


def test_ciphertexts_decrypt_with_phe(keys2048):
    pub, priv = keys2048
    ms = [0, 1, 2**2046, pub.n - 1]
    cts = vector.encrypt_many(pub.n, ms, vector.random_obfuscators(pub.n, len(ms)))
    assert [priv.raw_decrypt(c) for c in cts] == ms
    assert all(0 < c < pub.nsquare for c in cts)


def test_refuses_plaintext_out_of_range(keys512):
    pub, _ = keys512
    with pytest.raises(ValueError, match="out of range"):
        vector.encrypt_many(pub.n, [pub.n], vector.random_obfuscators(pub.n, 1))


def test_two_encryptions_of_the_same_plaintext_differ(keys512):
    pub, priv = keys512
    store = vector.ObfuscatorStore(pub.n, None)
    a = vector.encrypt_many(pub.n, [7, 7], store.take(2)[0])
    b = vector.encrypt_many(pub.n, [7, 7], store.take(2)[0])
    assert len({*a, *b}) == 4
    assert {priv.raw_decrypt(c) for c in a + b} == {7}


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_precompute_in_pool_then_take(keys512, kind):
    pub, _ = keys512
    pool = vector.WorkerPool(2, kind)
    try:
        store = vector.ObfuscatorStore(pub.n, pool)
        store.start(10)
        first, _ = store.take(6)
        assert len(first) == 6
        second, precomputed = store.take(9)  # 4 left, 5 computed on demand
        assert len(second) == 9 and precomputed <= 4
        assert len(set(first + second)) == 15  # never handed out twice
    finally:
        pool.close()
    assert not pool.started


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_take_reports_precomputed_count(keys512, kind):
    pub, _ = keys512
    pool = vector.WorkerPool(2, kind)
    try:
        store = vector.ObfuscatorStore(pub.n, pool)
        store.start(8)
        store.wait()
        _, precomputed = store.take(8)
        assert precomputed == 8
        _, precomputed = store.take(3)  # nothing left: all three computed on demand
        assert precomputed == 0
    finally:
        pool.close()


def test_list_decryption_matches_phe_raw_decrypt(keys2048):
    """``decrypt_chunk`` (GIL-free ``powmod_base_list``) is phe's ``raw_decrypt``, edges too."""
    import secrets

    pub, priv = keys2048
    ms = [0, 1, pub.n - 1, 2**2046, *(secrets.randbelow(pub.n) for _ in range(12))]
    cts = vector.encrypt_many(pub.n, ms, vector.random_obfuscators(pub.n, len(ms)))
    assert vector.decrypt_chunk(pub.n, priv.p, priv.q, cts) == [priv.raw_decrypt(c) for c in cts]
    assert vector.decrypt_chunk(pub.n, priv.p, priv.q, cts) == ms
    assert vector.decrypt_chunk(pub.n, priv.p, priv.q, []) == []


@pytest.mark.parametrize("workers", [2, 3])
def test_fixed_base_on_demand_shares_work_with_gil_free_workers(keys1024, workers):
    """On the critical path the table method runs in the calling thread only (it holds the
    GIL); the pool's workers add powmod draws of the same distribution meanwhile."""
    pub, priv = keys1024
    lam = (priv.p - 1) * (priv.q - 1) // math.gcd(priv.p - 1, priv.q - 1)
    pool = vector.WorkerPool(workers, "thread")
    try:
        store = vector.ObfuscatorStore(pub.n, pool, (priv.p, priv.q))
        got, precomputed = store.take(25)
        assert precomputed == 0 and len(got) == 25 and len(set(got)) == 25
        assert all(pow(r, lam, pub.nsquare) == 1 for r in got)  # n-th residues, every one
        assert [priv.raw_decrypt(c) for c in vector.encrypt_many(pub.n, [9] * 25, got)] == [9] * 25
    finally:
        pool.close()


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_parallel_decrypt_matches_inline(keys1024, kind):
    pub, priv = keys1024
    ms = list(range(40))
    cts = vector.encrypt_many(pub.n, ms, vector.random_obfuscators(pub.n, len(ms)))
    pool = vector.WorkerPool(2, kind)
    try:
        assert vector.decrypt_many(priv, cts, pool, min_parallel=1) == ms
        assert vector.decrypt_many(priv, cts, None) == ms
    finally:
        pool.close()


def test_thread_pool_stops_its_threads(keys512):
    pub, _ = keys512
    pool = vector.WorkerPool(2, "thread")
    prefix = f"fedids-crypto-{id(pool):x}"
    pool.submit(vector.random_obfuscators, pub.n, 2).result()
    assert any(t.name.startswith(prefix) for t in threading.enumerate())
    pool.close()
    assert not any(t.name.startswith(prefix) for t in threading.enumerate())


def test_shared_pool_is_reused_and_shut_down():
    a = vector.shared_pool(2, "thread")
    assert vector.shared_pool(2, "thread") is a
    a.submit(abs, -1).result()
    vector.shutdown_shared_pools()
    assert not a.started
    assert vector.shared_pool(2, "thread") is not a


def test_unknown_pool_kind_is_refused():
    with pytest.raises(ValueError, match="thread"):
        vector.WorkerPool(2, "gpu")


def test_crt_obfuscators_are_fresh_nth_residues(keys1024):
    """With the private key, obfuscators come from the CRT: they must still be n-th residues
    (r**lambda == 1 mod n^2, so decryption works) and fresh each time."""
    pub, priv = keys1024
    rs = vector.random_obfuscators_crt(priv.p, priv.q, 6)
    lam = (priv.p - 1) * (priv.q - 1) // math.gcd(priv.p - 1, priv.q - 1)
    assert all(pow(r, lam, pub.nsquare) == 1 for r in rs)
    assert len(set(rs)) == 6 and all(0 < r < pub.nsquare for r in rs)
    ms = [0, 5, pub.n - 1, 2**900, 77, 1]
    cts = vector.encrypt_many(pub.n, ms, rs)
    assert [priv.raw_decrypt(c) for c in cts] == ms


def test_precompute_runs_in_one_background_thread_and_can_be_cancelled(keys1024):
    pub, _ = keys1024
    pool = vector.WorkerPool(2, "thread")
    try:
        store = vector.ObfuscatorStore(pub.n, pool)
        store.start(500)  # far more than it will finish
        assert [t.name for t in threading.enumerate()].count("fedids-precompute") == 1
        assert not pool.started  # the pool is kept for work on the critical path
        store.cancel()
        assert "fedids-precompute" not in [t.name for t in threading.enumerate()]
        out, _ = store.take(4)
        assert len(set(out)) == 4
    finally:
        pool.close()


def test_store_uses_factors_when_given(keys512, monkeypatch):
    from fedids.crypto import obfuscators

    pub, priv = keys512
    monkeypatch.setattr(obfuscators, "random_obfuscators", lambda *a: pytest.fail("slow path"))
    store = vector.ObfuscatorStore(pub.n, None, (priv.p, priv.q), "classic")
    assert len(store.take(3)[0]) == 3
    with pytest.raises(ValueError, match="factors"):
        vector.ObfuscatorStore(pub.n, None, (priv.p, priv.p))
