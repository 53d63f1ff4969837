"""Paillier obfuscators (the random factor of an encryption), computed ahead of time.

An encryption is ``(1 + m*n) * rho mod n^2`` where ``rho`` is a random n-th residue; ``rho``
does not depend on the message, so it is computed while the device trains
(:class:`ObfuscatorStore`) and each one is used exactly once (reusing one reveals
``m1 - m2``). Three ways to draw ``rho``, slowest first (docs/paillier.md, "Obfuscators"):

* :func:`random_obfuscators` -- ``r^n mod n^2``, a 2048-bit exponent modulo a 4096-bit number;
* :func:`random_obfuscators_crt` -- the same distribution through the CRT, for a holder of
  the private key (every device is one);
* :func:`fixed_base_obfuscators` -- ``h_s^a`` with ``h_s = h^n mod n^2`` for a fixed random
  ``h`` and a fresh short ``a`` (Damgard-Jurik-Nielsen), by fixed-base windowed
  exponentiation over a precomputed table (through the CRT too when the factors are known).
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Sequence
from concurrent.futures import Future

import gmpy2

from fedids.crypto.pool import WorkerPool, _release_gil, split


def random_obfuscators(n: int, count: int) -> list[int]:
    """``count`` fresh values ``r**n mod n**2`` with ``r`` uniform in Z*_n (OS randomness)."""
    n_mpz = gmpy2.mpz(n)
    n2 = n_mpz * n_mpz
    out = []
    while len(out) < count:
        r = secrets.randbelow(n - 1) + 1
        if gmpy2.gcd(r, n_mpz) != 1:  # negligible probability; it would leak a factor
            continue
        out.append(int(gmpy2.powmod(r, n_mpz, n2)))
    return out


def random_obfuscators_crt(p: int, q: int, count: int) -> list[int]:
    """The same distribution as :func:`random_obfuscators`, about 3-4x cheaper, for a holder
    of the private key (every fedids device is one: it decrypts the aggregate).

    The n-th residues modulo n^2 are exactly the subgroup of order phi(n), which by the CRT
    is (order p-1 subgroup mod p^2) x (order q-1 subgroup mod q^2), and ``r**n`` for uniform
    ``r`` is uniform over it. ``s**p mod p**2`` for uniform ``s`` in Z*_p is uniform over the
    order p-1 subgroup (``s`` and ``s + kp`` give the same value), so combining one such
    value mod p^2 and one mod q^2 yields a uniform n-th residue with two 1024-bit exponents
    modulo 2048-bit numbers instead of one 2048-bit exponent modulo a 4096-bit number.
    """
    p_mpz, q_mpz = gmpy2.mpz(p), gmpy2.mpz(q)
    p2, q2 = p_mpz * p_mpz, q_mpz * q_mpz
    p2_inv = gmpy2.invert(p2, q2)
    out = []
    for _ in range(count):
        a = gmpy2.powmod(secrets.randbelow(p - 1) + 1, p_mpz, p2)
        b = gmpy2.powmod(secrets.randbelow(q - 1) + 1, q_mpz, q2)
        out.append(int(a + p2 * ((b - a) * p2_inv % q2)))
    return out


#: Exponent window of the fixed-base tables (bits per table row; measured best of 4-8 here).
WINDOW = 6
#: Obfuscator methods :class:`ObfuscatorStore` accepts.
METHODS = ("fixed-base", "classic")


def short_exponent_bits(n_bits: int) -> int:
    """DJN's exponent length: ``ceil(k/2)`` bits for a ``k``-bit modulus (1024 for 2048)."""
    return (int(n_bits) + 1) // 2


class FixedBaseTable:
    """``g^(d * 2^(w*i)) mod m`` for every window ``i`` and digit ``d``, so that ``g^a`` for
    any ``a < 2^exp_bits`` is one product of ``ceil(exp_bits/w)`` table entries: no squaring
    at all, which is what makes a FIXED base cheap (about 6x fewer multiplications than a
    square-and-multiply ``powmod`` with the same exponent)."""

    def __init__(self, base: int, modulus: int, exp_bits: int, window: int = WINDOW) -> None:
        self.modulus = gmpy2.mpz(modulus)
        self.window = window
        self.exp_bits = exp_bits
        rows = []
        g = gmpy2.mpz(base) % self.modulus
        for _ in range(-(-exp_bits // window)):
            row = [gmpy2.mpz(1), g]
            for _ in range(2, 1 << window):
                row.append(row[-1] * g % self.modulus)
            rows.append(row)
            g = row[-1] * g % self.modulus  # g^(2^w): the next row's base
        self.rows = rows

    def pow(self, a: int) -> gmpy2.mpz:
        if not 0 <= a < 1 << self.exp_bits:
            raise ValueError("exponent out of the table's range")
        m, mask, acc = self.modulus, (1 << self.window) - 1, gmpy2.mpz(1)
        for row in self.rows:
            digit = a & mask
            if digit:
                acc = acc * row[digit] % m
            a >>= self.window
            if not a:
                break
        return acc


class ShortExponentBase:
    """A random ``h_s = h^n mod n^2`` (``h = -x^2 mod n``, ``x`` uniform in Z*_n) with its
    fixed-base tables; :meth:`draw` returns ``h_s^a`` for fresh uniform ``a`` of
    ``ceil(k/2)`` bits. Made locally by each encryptor from OS randomness: nothing is
    published and no party relies on anyone else's ``h_s``. With the factors, the tables
    are modulo ``p^2`` and ``q^2`` and results are recombined by the CRT (smaller numbers)."""

    def __init__(self, n: int, factors: tuple[int, int] | None = None) -> None:
        n_mpz = gmpy2.mpz(n)
        self.n = int(n)
        self.exp_bits = short_exponent_bits(n_mpz.bit_length())
        while True:
            x = gmpy2.mpz(secrets.randbelow(self.n - 2) + 2)
            if gmpy2.gcd(x, n_mpz) == 1:
                break
        h = (-x * x) % n_mpz
        self.crt = factors is not None
        if factors is not None:
            p, q = (gmpy2.mpz(f) for f in factors)
            if p * q != n_mpz:
                raise ValueError("factors do not match n")
            self.p2, self.q2 = p * p, q * q
            self.p2_inv = gmpy2.invert(self.p2, self.q2)
            self.bases = (gmpy2.powmod(h, n_mpz, self.p2), gmpy2.powmod(h, n_mpz, self.q2))
            self.moduli = (self.p2, self.q2)
        else:
            n2 = n_mpz * n_mpz
            self.bases, self.moduli = (gmpy2.powmod(h, n_mpz, n2),), (n2,)
        pairs = zip(self.bases, self.moduli, strict=True)
        self.tables = tuple(FixedBaseTable(b, m, self.exp_bits) for b, m in pairs)

    def _combine(self, parts: tuple[gmpy2.mpz, ...]) -> int:
        if not self.crt:
            return int(parts[0])
        u, v = parts
        return int(u + self.p2 * ((v - u) * self.p2_inv % self.q2))

    def power(self, a: int) -> int:
        """``h_s^a mod n^2`` from the tables (the fastest way, but a Python loop of ~171
        multiplications that holds the GIL throughout)."""
        return self._combine(tuple(t.pow(a) for t in self.tables))

    def powers_gil_free(self, exponents: Sequence[int]) -> list[int]:
        """The same ``h_s^a mod n^2`` for every ``a``, by ``powmod`` lists: one gmpy2 call per
        modulus, GIL released (about 3.5x the work of :meth:`power`, but it does not stall a
        thread that trains beside it)."""
        if any(not 0 <= a < 1 << self.exp_bits for a in exponents):
            raise ValueError("exponent out of range")
        exps = [gmpy2.mpz(a) for a in exponents]
        parts = [
            gmpy2.powmod_exp_list(b, exps, m) for b, m in zip(self.bases, self.moduli, strict=True)
        ]
        return [self._combine(tuple(p)) for p in zip(*parts, strict=True)]

    def draw(self, count: int) -> list[int]:
        return [self.power(secrets.randbits(self.exp_bits)) for _ in range(count)]

    def draw_gil_free(self, count: int) -> list[int]:
        """``count`` draws by :meth:`powers_gil_free`."""
        return self.powers_gil_free([secrets.randbits(self.exp_bits) for _ in range(count)])


_BASES: dict[tuple[int, bool], ShortExponentBase] = {}
_BASES_LOCK = threading.Lock()


def short_exponent_base(n: int, factors: tuple[int, int] | None = None) -> ShortExponentBase:
    """The process's base for ``n`` (built on first use: one ``h^n`` and the tables)."""
    key = (int(n), factors is not None)
    with _BASES_LOCK:  # built once, even when several workers ask at once
        base = _BASES.get(key)
        if base is None:
            if len(_BASES) >= 4:  # keys of past runs: drop them
                _BASES.clear()
            base = _BASES[key] = ShortExponentBase(n, factors)
        return base


def fixed_base_obfuscators(n: int, factors: tuple[int, int] | None, count: int) -> list[int]:
    """``count`` fresh obfuscators ``h_s^a`` (see :class:`ShortExponentBase`)."""
    return short_exponent_base(n, factors).draw(count)


def fixed_base_obfuscators_gil_free(
    n: int, factors: tuple[int, int] | None, count: int
) -> list[int]:
    """The same distribution as :func:`fixed_base_obfuscators`, by ``powmod`` (GIL released):
    for background work beside training (see :class:`ObfuscatorStore`)."""
    return short_exponent_base(n, factors).draw_gil_free(count)


class ObfuscatorStore:
    """Obfuscators for one key, computed ahead of time and handed out once each.

    :meth:`start` computes them one at a time in ONE background thread: the device trains
    on another core, so precompute should not compete with it for every core, and partial
    progress is usable. That thread uses ``powmod``, which releases the GIL, even for
    fixed-base obfuscators whose table method is cheaper: the table method is a Python loop
    that holds the GIL, and beside a training thread (which needs the GIL between torch
    operations) it slowed 1-thread training by 0.2-0.3 s for 166 obfuscators, more than the
    0.18 s it costs (measured; docs/paillier.md "The GIL, measured"). :meth:`take` stops
    that thread and computes whatever is still missing at once (:meth:`_compute_now`). With
    a process pool (a gmpy2 that cannot release the GIL) the background work
    is instead queued as one task in the pool.
    """

    def __init__(
        self,
        n: int,
        pool: WorkerPool | None,
        factors: tuple[int, int] | None = None,
        method: str = "fixed-base",
    ) -> None:
        if factors is not None and factors[0] * factors[1] != n:
            raise ValueError("factors do not match n")
        if method not in METHODS:
            raise ValueError(f"obfuscator method must be one of {METHODS}, not {method!r}")
        self.n = n
        self.pool = pool
        self.factors = factors
        self.method = method
        if method == "fixed-base":
            self._fn, self._args = fixed_base_obfuscators, (n, factors)
            self._background_fn = fixed_base_obfuscators_gil_free
        else:
            self._fn, self._args = (
                (random_obfuscators_crt, factors) if factors else (random_obfuscators, (n,))
            )
            self._background_fn = self._fn  # already one GIL-free powmod per value
        self._ready: list[int] = []
        self._target = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._pending: list[Future] = []  # process pools only
        self._lock = threading.Lock()

    def _use_processes(self) -> bool:
        return self.pool is not None and self.pool.kind == "process"

    def start(self, count: int) -> None:
        """Have ``count`` obfuscators computed in the background; returns immediately."""
        with self._lock:
            self._target = max(self._target, count)
            queued = len(self._ready) + sum(f.count for f in self._pending)  # type: ignore[attr-defined]
            if queued >= self._target:
                return
            if self._use_processes():
                fut = self.pool.submit(self._fn, *self._args, self._target - queued)  # type: ignore[union-attr]
                fut.count = self._target - queued  # type: ignore[attr-defined]
                self._pending.append(fut)
            elif self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(
                    target=self._background, name="fedids-precompute", daemon=True
                )
                self._thread.start()

    def _background(self) -> None:
        _release_gil()
        while not self._stop.is_set():
            with self._lock:
                if len(self._ready) >= self._target:
                    return
            value = self._background_fn(*self._args, 1)[0]
            with self._lock:
                self._ready.append(value)

    def _halt(self, wait_for_target: bool) -> None:
        """Stop (or finish, if ``wait_for_target``) the background work; collect results."""
        thread = self._thread
        if thread is not None:
            if not wait_for_target:
                self._stop.set()
            thread.join()
            self._thread = None
        with self._lock:
            pending, self._pending = self._pending, []
        for fut in pending:
            values = fut.result()
            with self._lock:
                self._ready.extend(values)

    def _compute_now(self, count: int) -> list[int]:
        """``count`` obfuscators on the critical path, with every worker of the pool.

        The fixed-base table method holds the GIL, so in a thread pool only one thread can
        run it (two threads measured slower than one): this thread runs it, and the pool's
        workers draw a share by ``powmod`` (GIL released, about 1/4 as fast each) meanwhile.
        """
        if self.pool is None or self.pool.workers < 2 or count < 2:
            return self._fn(*self._args, count)
        if self._use_processes() or self.method != "fixed-base":
            futures = [
                self.pool.submit(self._fn, *self._args, size)
                for size in split(count, self.pool.workers)
            ]
            return [v for fut in futures for v in fut.result()]
        helpers = self.pool.workers - 1
        side = count * helpers // (helpers + 4)
        futures = [
            self.pool.submit(self._background_fn, *self._args, size)
            for size in (split(side, helpers) if side else [])
        ]
        mine = self._fn(*self._args, count - side)
        return mine + [v for fut in futures for v in fut.result()]

    def take(self, count: int) -> tuple[list[int], int]:
        """``count`` obfuscators, and how many of them were ready before this call (the rest
        were computed now, on the critical path)."""
        with self._lock:
            precomputed = len(self._ready) + sum(
                f.count  # type: ignore[attr-defined]
                for f in self._pending
                if f.done()
            )
        self._top_up(count)
        with self._lock:
            out, self._ready = self._ready[:count], self._ready[count:]
            self._target = max(0, self._target - count)
        return out, min(precomputed, count)

    def wait(self) -> None:
        """Block until the obfuscators asked for by :meth:`start` are computed. Whatever the
        background thread has not done yet is computed now (:meth:`_compute_now`, the table
        method first): a caller that waits is not training beside it."""
        with self._lock:
            target = self._target
        self._top_up(target)

    def _top_up(self, count: int) -> None:
        """Stop the background work (a process pool's queued tasks are waited for) and
        compute whatever is still missing of ``count`` now."""
        self._halt(wait_for_target=self._use_processes())
        with self._lock:
            missing = count - len(self._ready)
        if missing > 0:
            fresh = self._compute_now(missing)
            with self._lock:
                self._ready.extend(fresh)

    def cancel(self) -> None:
        """Stop background work and drop unused obfuscators."""
        self._stop.set()
        with self._lock:
            for fut in self._pending:
                fut.cancel()
            self._pending.clear()
            self._ready.clear()
            self._target = 0
        if self._thread is not None:
            self._thread.join()
            self._thread = None
