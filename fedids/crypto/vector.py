"""Vector Paillier with gmpy2: many plaintexts at once, obfuscators precomputed, worker pool.

Why it is fast
--------------
* ``g = n + 1``, so ``g**m = 1 + m*n (mod n**2)``: the message part costs one multiplication.
* The only expensive part of an encryption is the obfuscator (:mod:`fedids.crypto.obfuscators`):
  it does not depend on the message, so it is computed while the device trains, and
  :func:`encrypt_many` then costs one multiplication per ciphertext.
* Decryption uses the CRT with everything precomputable precomputed (phe's ``raw_decrypt``:
  one 1024-bit-exponent power modulo ``p**2`` and one modulo ``q**2`` per ciphertext, which
  is the bare ``powmod`` floor), spread over the worker pool (:mod:`fedids.crypto.pool`).

The pool and obfuscator names are re-exported here for the callers that import them from
this module.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import gmpy2
from phe import paillier

from fedids.crypto.obfuscators import (  # noqa: F401  (re-exported)
    ObfuscatorStore,
    fixed_base_obfuscators,
    random_obfuscators,
    random_obfuscators_crt,
)
from fedids.crypto.pool import (  # noqa: F401  (re-exported)
    WorkerPool,
    default_pool_kind,
    gil_free_threads_available,
    shared_pool,
    shutdown_shared_pools,
)

#: Below this many ciphertexts a pool round trip costs more than it saves.
MIN_PARALLEL = 16
#: Starting worker processes costs ~0.3-1 s; below this many ciphertexts decrypt inline.
COLD_PROCESS_MIN = 512


_KEY_CACHE: dict[int, paillier.PaillierPrivateKey] = {}


def _private_key(n: int, p: int, q: int) -> paillier.PaillierPrivateKey:
    key = _KEY_CACHE.get(n)
    if key is None:
        _KEY_CACHE.clear()  # hold at most one private key per worker process
        key = paillier.PaillierPrivateKey(paillier.PaillierPublicKey(n), p, q)
        _KEY_CACHE[n] = key
    return key


def decrypt_chunk(n: int, p: int, q: int, ciphertexts: Sequence[int]) -> list[int]:
    """CRT decryption of raw ciphertexts: phe's ``raw_decrypt`` (same precomputed ``hp``,
    ``hq``, ``p^-1 mod q``), with the two powers of the whole chunk each computed in ONE
    gmpy2 call that releases the GIL (``powmod_base_list``): a thread that decrypts then
    never waits for the GIL between ciphertexts while another thread runs Python."""
    key = _private_key(n, p, q)
    p_mpz, q_mpz = gmpy2.mpz(key.p), gmpy2.mpz(key.q)
    cs = [gmpy2.mpz(c) for c in ciphertexts]
    xs = gmpy2.powmod_base_list(cs, p_mpz - 1, gmpy2.mpz(key.psquare))
    ys = gmpy2.powmod_base_list(cs, q_mpz - 1, gmpy2.mpz(key.qsquare))
    hp, hq, p_inv = gmpy2.mpz(key.hp), gmpy2.mpz(key.hq), gmpy2.mpz(key.p_inverse)
    out = []
    for x, y in zip(xs, ys, strict=True):
        mp = (x - 1) // p_mpz * hp % p_mpz
        mq = (y - 1) // q_mpz * hq % q_mpz
        out.append(int(mp + ((mq - mp) * p_inv % q_mpz) * p_mpz))
    return out


# -- vector operations -------------------------------------------------------------------------
def encrypt_many(n: int, plaintexts: Sequence[int], obfuscators: Sequence[int]) -> list[int]:
    """``(1 + m*n) * r**n mod n**2`` for each plaintext (``0 <= m < n``)."""
    if len(obfuscators) < len(plaintexts):
        raise ValueError("not enough obfuscators")
    n_mpz = gmpy2.mpz(n)
    n2 = n_mpz * n_mpz
    out = []
    for m, rn in zip(plaintexts, obfuscators, strict=False):
        if not 0 <= m < n:
            raise ValueError("plaintext out of range [0, n)")
        out.append(int((1 + gmpy2.mpz(m) * n_mpz) * rn % n2))
    return out


def decrypt_many(
    private_key: paillier.PaillierPrivateKey,
    ciphertexts: Sequence[int],
    pool: WorkerPool | None,
    min_parallel: int = MIN_PARALLEL,
) -> list[int]:
    """Decrypt raw ciphertexts, in parallel if a pool is given and the batch is big enough."""
    n = private_key.public_key.n
    cold_processes = pool is not None and pool.kind == "process" and not pool.started
    if (
        pool is None
        or pool.workers < 2
        or len(ciphertexts) < min_parallel
        or (cold_processes and len(ciphertexts) < COLD_PROCESS_MIN)
    ):
        return decrypt_chunk(n, private_key.p, private_key.q, ciphertexts)
    chunk = math.ceil(len(ciphertexts) / (pool.workers * 2))
    p, q = private_key.p, private_key.q
    futures = [
        pool.submit(decrypt_chunk, n, p, q, list(ciphertexts[i : i + chunk]))
        for i in range(0, len(ciphertexts), chunk)
    ]
    out: list[int] = []
    for fut in futures:
        out.extend(fut.result())
    return out
