"""Vector Paillier with gmpy2: many plaintexts at once, randomness precomputed, worker pool.

Why it is fast
--------------
* ``g = n + 1``, so ``g**m = 1 + m*n (mod n**2)``: the message part costs one multiplication.
* The only expensive part of an encryption is the obfuscator ``r**n mod n**2`` (one
  2048-bit-exponent power modulo a 4096-bit number, ~8 ms). It does not depend on the
  message, so :class:`ObfuscatorStore` computes it in a background pool while the device
  trains; :func:`encrypt_many` then costs one multiplication per ciphertext.
  Each obfuscator is used exactly once (reusing ``r`` would reveal ``m1 - m2``).
* Decryption uses the CRT (phe's ``raw_decrypt``: powers modulo ``p**2`` and ``q**2``),
  spread over the pool when there are enough ciphertexts to pay for the dispatch.

The pool (:class:`WorkerPool`) runs threads by default, because gmpy2 releases the GIL
during ``powmod`` (measured: 2 threads do 40 powmods in half the time of one), or
``spawn``-started processes (``FEDIDS_CRYPTO_POOL=process``; ``spawn`` because ``fork``
can deadlock inside multi-threaded hosts such as Ray workers). One pool per worker count
is shared by the process (:func:`shared_pool`) because clients are re-created every
round; it is stopped at interpreter exit or by :func:`shutdown_shared_pools`.
"""

from __future__ import annotations

import atexit
import math
import multiprocessing
import os
import secrets
import threading
from collections.abc import Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor

import gmpy2
from phe import paillier

#: Below this many ciphertexts a pool round trip costs more than it saves.
MIN_PARALLEL = 16
#: Starting worker processes costs ~0.3-1 s; below this many ciphertexts decrypt inline.
COLD_PROCESS_MIN = 512


# -- work functions (module level: they run in pool processes) ----------------------------
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


_KEY_CACHE: dict[int, paillier.PaillierPrivateKey] = {}


def _private_key(n: int, p: int, q: int) -> paillier.PaillierPrivateKey:
    key = _KEY_CACHE.get(n)
    if key is None:
        _KEY_CACHE.clear()  # hold at most one private key per worker process
        key = paillier.PaillierPrivateKey(paillier.PaillierPublicKey(n), p, q)
        _KEY_CACHE[n] = key
    return key


def decrypt_chunk(n: int, p: int, q: int, ciphertexts: Sequence[int]) -> list[int]:
    """CRT decryption of raw ciphertexts (phe's ``raw_decrypt``)."""
    key = _private_key(n, p, q)
    return [int(key.raw_decrypt(c)) for c in ciphertexts]


# -- pool -------------------------------------------------------------------------------------
def _release_gil() -> None:
    """Let gmpy2 release the GIL in this worker thread's powmod (thread-local setting)."""
    gmpy2.get_context().allow_release_gil = True


def gil_free_threads_available() -> bool:
    """True if this gmpy2 can release the GIL, making threads truly parallel."""
    return hasattr(gmpy2.get_context(), "allow_release_gil")


def default_pool_kind() -> str:
    """``FEDIDS_CRYPTO_POOL`` (``thread``/``process``), else threads if gmpy2 allows."""
    kind = os.environ.get("FEDIDS_CRYPTO_POOL", "").strip().lower()
    if kind in ("thread", "process"):
        return kind
    return "thread" if gil_free_threads_available() else "process"


class WorkerPool:
    """A lazily started pool of ``workers`` threads (default) or ``spawn`` processes.

    Threads are the default because gmpy2 releases the GIL inside ``powmod``: they run in
    parallel like processes but start in microseconds, share the key without pickling it
    to other processes, and need no re-import of ``__main__`` (which ``spawn`` does, costing
    0.3-1 s per worker in a Flower/Ray client process). Processes remain available for a
    gmpy2 that cannot release the GIL.
    """

    def __init__(self, workers: int, kind: str | None = None) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        kind = kind or default_pool_kind()
        if kind not in ("thread", "process"):
            raise ValueError(f"pool kind must be 'thread' or 'process', not {kind!r}")
        self.workers = workers
        self.kind = kind
        self._executor: Executor | None = None
        self._lock = threading.Lock()

    @property
    def started(self) -> bool:
        return self._executor is not None

    def executor(self) -> Executor:
        with self._lock:
            if self._executor is None:
                if self.kind == "thread":
                    self._executor = ThreadPoolExecutor(
                        max_workers=self.workers,
                        thread_name_prefix=f"fedids-crypto-{id(self):x}",
                        initializer=_release_gil,
                    )
                else:
                    self._executor = ProcessPoolExecutor(
                        max_workers=self.workers, mp_context=multiprocessing.get_context("spawn")
                    )
            return self._executor

    def submit(self, fn, /, *args) -> Future:  # type: ignore[no-untyped-def]
        return self.executor().submit(fn, *args)

    def close(self) -> None:
        """Stop the workers (waits for running tasks; drops queued ones)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)


_SHARED: dict[tuple[int, str], WorkerPool] = {}
_SHARED_LOCK = threading.Lock()


def shared_pool(workers: int, kind: str | None = None) -> WorkerPool:
    """The process-wide pool for ``workers`` (created on first use, started lazily).

    Clients are re-created every round; sharing the pool avoids restarting workers.
    """
    kind = kind or default_pool_kind()
    with _SHARED_LOCK:
        pool = _SHARED.get((workers, kind))
        if pool is None:
            pool = _SHARED[(workers, kind)] = WorkerPool(workers, kind)
        return pool


def shutdown_shared_pools() -> None:
    with _SHARED_LOCK:
        pools = list(_SHARED.values())
        _SHARED.clear()
    for pool in pools:
        pool.close()


atexit.register(shutdown_shared_pools)


def _split(count: int, parts: int) -> list[int]:
    base, extra = divmod(count, parts)
    return [base + (1 if i < extra else 0) for i in range(parts) if base or i < extra]


# -- obfuscators ------------------------------------------------------------------------------
class ObfuscatorStore:
    """Obfuscators for one key, computed ahead of time and handed out once each.

    :meth:`start` computes them one at a time in ONE background thread: the device trains
    on another core, so precompute should not compete with it for every core, and partial
    progress is usable. :meth:`take` stops that thread and computes whatever is still
    missing with all the pool's workers. With a process pool (a gmpy2 that cannot release
    the GIL) the background work is instead queued as one task in the pool.
    """

    def __init__(
        self, n: int, pool: WorkerPool | None, factors: tuple[int, int] | None = None
    ) -> None:
        if factors is not None and factors[0] * factors[1] != n:
            raise ValueError("factors do not match n")
        self.n = n
        self.pool = pool
        self.factors = factors
        self._fn, self._args = (
            (random_obfuscators_crt, factors) if factors else (random_obfuscators, (n,))
        )
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
            value = self._fn(*self._args, 1)[0]
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
        """``count`` obfuscators on the critical path, with every worker of the pool."""
        if self.pool is None or self.pool.workers < 2 or count < 2:
            return self._fn(*self._args, count)
        futures = [
            self.pool.submit(self._fn, *self._args, size)
            for size in _split(count, self.pool.workers)
        ]
        return [v for fut in futures for v in fut.result()]

    def take(self, count: int) -> tuple[list[int], int]:
        """``count`` obfuscators, and how many of them were ready before this call (the rest
        were computed now, on the critical path)."""
        with self._lock:
            precomputed = len(self._ready) + sum(
                f.count  # type: ignore[attr-defined]
                for f in self._pending
                if f.done()
            )
        self._halt(wait_for_target=self._use_processes())
        with self._lock:
            missing = count - len(self._ready)
        if missing > 0:
            fresh = self._compute_now(missing)
            with self._lock:
                self._ready.extend(fresh)
        with self._lock:
            out, self._ready = self._ready[:count], self._ready[count:]
            self._target = max(0, self._target - count)
        return out, min(precomputed, count)

    def wait(self) -> None:
        """Block until the obfuscators asked for by :meth:`start` are computed."""
        self._halt(wait_for_target=True)

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
