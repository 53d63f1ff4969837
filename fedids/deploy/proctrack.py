"""Process bookkeeping by PID: find, signal and reap the processes a harness started.

Why this module: Flower starts helpers in sessions of their own (``flower-superexec``,
``flwr-serverapp``, ``flwr-clientapp``, ``flwr-simulation``), and the simulation's Ray cluster
(``gcs_server``, ``raylet``, dashboard, agents, ``ray::`` workers) reparents to init when its
driver exits. Parentage alone therefore loses track of them, and killing by name would hit
other people's processes on a shared machine.

So every process a harness starts gets a **group tag** in its environment
(``FEDIDS_PROCESS_GROUP=<random hex>``). Children inherit the environment, Ray's workers
included (checked on Flower 1.42 / Ray 2.55), whatever their session or parent. A harness
finds its processes by reading ``/proc/<pid>/environ`` for its own tag, and signals a process
only if its start time is still the one it saw (no PID reuse accidents).

Two things keep the tag readable. Ray renames its processes with setproctitle, which by
default overwrites the memory ``/proc/<pid>/environ`` shows; the environment the harnesses
give Flower sets ``SPT_NOENV=1`` (``fedids.deploy.flower.flower_env``), which stops that. And
clean-up also ends the untagged descendants of tagged processes (:func:`group_tree`), for a
program that clears or rewrites its own environment.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

#: environment variable carrying a harness's group tag to every process it starts
GROUP_ENV = "FEDIDS_PROCESS_GROUP"

#: (pid, start time in clock ticks since boot): identifies one process across PID reuse
PidStart = tuple[int, str]


def new_group_tag() -> str:
    """A tag no other harness on this machine uses."""
    return secrets.token_hex(8)


def proc_stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, start time) of ``pid`` from /proc, or None if it is gone or a zombie."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name may contain spaces and parentheses: split after the last ')'
    rest = raw[raw.rfind(")") + 2 :].split()
    if rest[0] in ("Z", "X"):
        return None
    return int(rest[1]), rest[19]


def alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    return proc_stat(pid) is not None


def label(pid: int) -> str:
    """A short human name for messages: ``flwr-serverapp``, ``raylet``, ``ray::IDLE``..."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    words = [w.decode(errors="replace") for w in argv if w]
    if not words:
        return "?"
    if Path(words[0]).name.startswith("python"):
        words = [w for w in words[1:] if not w.startswith("-")] or words
    return Path(words[0].split()[0]).name


def _children() -> dict[int, list[PidStart]]:
    """Every live process as (pid, start time), by parent pid (one /proc scan)."""
    children: dict[int, list[PidStart]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = proc_stat(int(entry))
            if st:
                children.setdefault(st[0], []).append((int(entry), st[1]))
    return children


def _below(children: dict[int, list[PidStart]], roots: Iterable[int]) -> list[PidStart]:
    """The descendants of ``roots`` in a :func:`_children` map."""
    out: list[PidStart] = []
    todo = list(roots)
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child[0])
    return out


def descendants(pid: int) -> list[PidStart]:
    """All live descendants of ``pid`` as (pid, start time), found through /proc parentage."""
    return _below(_children(), [pid])


def _has_tag(pid: int, needle: bytes) -> bool:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:  # gone, or another user's process
        return False
    return env.startswith(needle[1:]) or needle in env


def group_members(tag: str, env_name: str = GROUP_ENV) -> list[PidStart]:
    """Every live process whose environment carries ``env_name=tag``."""
    needle = f"\0{env_name}={tag}\0".encode()
    out: list[PidStart] = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _has_tag(int(entry), needle):
            st = proc_stat(int(entry))
            if st:
                out.append((int(entry), st[1]))
    return sorted(out)


def group_tree(tag: str, env_name: str = GROUP_ENV) -> list[PidStart]:
    """:func:`group_members` and all their live descendants, tagged or not."""
    members = group_members(tag, env_name)
    return sorted(set(members) | set(_below(_children(), [pid for pid, _ in members])))


def signal_if_same(pid: int, start: str, sig: int) -> bool:
    """Send ``sig`` to ``pid`` only if it is still the process we saw (guards PID reuse)."""
    st = proc_stat(pid)
    if st is None or st[1] != start:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
        return True
    return False


def _still_there(procs: Iterable[PidStart]) -> list[PidStart]:
    return [(p, s) for p, s in procs if (st := proc_stat(p)) and st[1] == s]


def wait_gone(procs: Iterable[PidStart], timeout: float) -> list[PidStart]:
    """Wait until none of ``procs`` is alive (reaping our own zombies); returns the survivors."""
    deadline = time.monotonic() + timeout
    alive_now = _still_there(procs)
    while alive_now and time.monotonic() < deadline:
        time.sleep(0.05)
        for p, _ in alive_now:  # reap zombies that are our own children
            with contextlib.suppress(ChildProcessError):
                os.waitpid(p, os.WNOHANG)
        alive_now = _still_there(alive_now)
    return alive_now


def terminate(procs: Iterable[PidStart], grace: float = 3.0) -> list[PidStart]:
    """SIGTERM ``procs``, SIGKILL whatever outlives ``grace`` seconds; returns the survivors."""
    targets = list(procs)
    for pid, start in targets:
        signal_if_same(pid, start, signal.SIGTERM)
    for pid, start in wait_gone(targets, grace):
        signal_if_same(pid, start, signal.SIGKILL)
    return wait_gone(targets, 2.0)


def terminate_group(
    tag: str,
    keep: Iterable[int] = (),
    grace: float = 3.0,
    *,
    quiet: float = 1.0,
    bound: float = 30.0,
) -> list[PidStart]:
    """End every process of group ``tag`` except the PIDs in ``keep``; returns survivors.

    Looks again until the group has stayed empty for ``quiet`` seconds (at most ``bound``
    seconds in all): a process being started while we signal is caught by a later look.
    Each look takes the members' untagged descendants too (:func:`group_tree`).

    (Two CI runs left Ray's ``DashboardAgent`` and ``RuntimeEnvAgent`` of a Ctrl-C'd demo
    alive. More looks did not help: setproctitle had wiped the tag from their
    ``/proc/PID/environ``, so no look could see them. ``SPT_NOENV=1`` in ``flower_env`` did.)
    """
    keep = set(keep)
    deadline = time.monotonic() + bound
    survivors: list[PidStart] = []
    empty_since: float | None = None
    while True:
        members = [(p, s) for p, s in group_tree(tag) if p not in keep and p != os.getpid()]
        now = time.monotonic()
        if members:
            empty_since = None
            survivors = terminate(members, grace)
        else:
            survivors = []
            empty_since = now if empty_since is None else empty_since
            if now - empty_since >= quiet:
                break
        if now >= deadline:
            break
        time.sleep(0.1)
    return survivors


def end_group(tag: str) -> None:
    """:func:`terminate_group`, then one warning naming any process that would not go."""
    survivors = terminate_group(tag)
    if survivors:
        names = ", ".join(f"{label(pid)} (pid {pid})" for pid, _ in survivors)
        logging.getLogger(__name__).warning("still running after clean-up: %s", names)


@dataclass
class Proc:
    """One started process, its log file, and the helpers it spawned (seen by parentage)."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    seen: set[PidStart] = field(default_factory=set)
    _targets: list[PidStart] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self, tail: int | None = 4000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return text if tail is None else text[-tail:]

    def remember_children(self) -> None:
        """Record the current descendants so :meth:`stop` can reach them after reparenting."""
        if self.alive():
            self.seen.update(descendants(self.pid))

    def wait(self, timeout: float) -> int | None:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """SIGKILL the process and its descendants at once: a device losing power."""
        self.remember_children()
        if self.alive():
            self.popen.kill()
        for pid, start in sorted(self.seen):
            signal_if_same(pid, start, signal.SIGKILL)
        self.popen.wait(10)
        wait_gone(sorted(self.seen), timeout=2.0)

    def begin_stop(self) -> None:
        """SIGTERM the main process and every descendant seen (does not wait).

        The helpers (``flwr-superexec``...) run in sessions of their own and would otherwise
        spend seconds retrying a parent that is gone before they notice and exit.
        """
        self.remember_children()
        self._targets = sorted(self.seen)
        if self.alive():
            self.popen.terminate()
        for pid, start in self._targets:
            signal_if_same(pid, start, signal.SIGTERM)

    def finish_stop(self, timeout: float = 10.0) -> None:
        """Wait for the main process (SIGKILL past ``timeout``), then end its descendants."""
        if self._targets is None:
            self.begin_stop()
        targets = self._targets or []
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)
        terminate(targets, grace=min(timeout, 5.0))

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM this process and every descendant seen, SIGKILL what outlives ``timeout``."""
        self.begin_stop()
        self.finish_stop(timeout)


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Inside: SIGTERM raises SystemExit(143) in the main thread, so ``finally`` clean-up runs.

    Python's default SIGTERM action ends the process at once, skipping every ``finally``:
    a harness stopped that way would leave its Flower and Ray processes running. Outside
    the main thread (where signal handlers cannot be set) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
