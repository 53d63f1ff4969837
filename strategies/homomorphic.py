"""Ciphertext arithmetic for the server: checks and the weighted homomorphic sum.

Only public-key operations live here: the server holds ``n`` and nothing else.
``Enc(a) * Enc(b) = Enc(a + b)`` and ``Enc(a) ** w = Enc(w * a)`` (mod ``n**2``).
"""

from __future__ import annotations

from collections.abc import Sequence

import gmpy2


def ciphertext_problem(ciphertexts: Sequence[int], n: int) -> str | None:
    """Why these are not valid ciphertexts for ``n`` (``None`` if they are).

    A valid ciphertext is an element of Z*_{n^2}: ``0 < c < n**2`` and coprime to ``n``.
    Anything else is not the output of an honest encryption and could break the sum.
    """
    n_mpz = gmpy2.mpz(n)
    n2 = n_mpz * n_mpz
    for i, c in enumerate(ciphertexts):
        if not 0 < c < n2:
            return f"ciphertext {i} is out of range (must be 0 < c < n^2)"
        if gmpy2.gcd(c, n_mpz) != 1:
            return f"ciphertext {i} is not invertible modulo n^2"
    return None


def weighted_sum(updates: Sequence[Sequence[int]], weights: Sequence[int], n: int) -> list[int]:
    """``prod_k c_k ** w_k mod n**2`` per position: encrypts ``sum_k w_k * m_k``."""
    if not updates or len(updates) != len(weights):
        raise ValueError("need one weight per update and at least one update")
    length = len(updates[0])
    if any(len(u) != length for u in updates):
        raise ValueError("updates have different lengths")
    if any(int(w) < 1 for w in weights):
        raise ValueError("weights must be positive integers")
    n_mpz = gmpy2.mpz(n)
    n2 = n_mpz * n_mpz
    out = []
    for j in range(length):
        acc = gmpy2.mpz(1)
        for update, w in zip(updates, weights, strict=True):
            acc = acc * gmpy2.powmod(update[j], int(w), n2) % n2
        out.append(int(acc))
    return out
