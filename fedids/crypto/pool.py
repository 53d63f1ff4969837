"""The crypto worker pool: threads by default (gmpy2 releases the GIL in ``powmod``).

One pool per worker count is shared by the process (:func:`shared_pool`) because clients
are re-created every round; it is stopped at interpreter exit or by
:func:`shutdown_shared_pools`. ``FEDIDS_CRYPTO_POOL=process`` selects ``spawn``-started
processes instead (for a gmpy2 that cannot release the GIL; ``spawn`` because ``fork`` can
deadlock inside multi-threaded hosts such as Ray workers).
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import threading
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor

import gmpy2


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


def split(count: int, parts: int) -> list[int]:
    """``count`` split into at most ``parts`` near-equal positive pieces."""
    base, extra = divmod(count, parts)
    return [base + (1 if i < extra else 0) for i in range(parts) if base or i < extra]
