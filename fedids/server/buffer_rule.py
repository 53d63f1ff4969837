"""When a buffered run aggregates, and how much a stale update weighs (pure logic, no flwr).

Buffered aggregation (FedBuff, Nguyen et al. 2022; BFL, Poorazad et al. 2024) lets fast devices
move the federation on without waiting for the slowest one. The server keeps a buffer of
updates and makes a new global version when one of these holds, checked after every event:

* ``buffer_full``: the buffer holds ``buffer_size`` (K) valid updates;
* ``time_threshold``: ``time_factor`` x T_W seconds passed since the last version, where T_W
  is BFL's weighted average time: the mean of the devices' recent response times, weighted
  by their data size (plain mode; in Paillier mode no record count reaches the server, so
  every device weighs the same). A device that has not answered yet counts with the time it
  has been working so far (a lower bound). T_W exists only once ``buffer_size`` devices have
  answered: before that, the lower bounds are the elapsed time itself, so the threshold would
  fire the moment ``min_updates`` arrived and the first version would miss a fast device by
  a fraction of a second (measured: its update then joined version 2 as a stale one, and the
  run's path depended on that race);
* ``all_arrived``: no update is on its way (waiting cannot add anything);

provided the buffer holds at least ``min_updates`` (``federation.min_fit_clients``) and
aggregating now strands nobody: a device still training on version ``b`` would land in a
version made after this one, with staleness ``version + 1 - b``; if that exceeds
``max_staleness`` its work would be thrown away, so the server waits for it instead (until
its call times out). The same holds for an update being re-based on the current version
(:mod:`fedids.device.buffered`): it is made for the next version and can join no other.
That bound is also the fairness guarantee: a device is in at least one of every
``max_staleness + 1`` aggregations, however slow it is. The run's last version
waits for every update still on its way (``final``), so no device's work is wasted.

A device whose next update would wait for a slower device anyway (the version it joins cannot
be made before that device's update arrives, or it would be stranded) does not sit idle: it
is asked for up to ``idle_epochs_factor`` x ``local_epochs`` local epochs, as many as its
measured times (per epoch, and per fit besides training) say fit before the slower device
is expected (:func:`epochs_to_fill`). Its extra epochs are real training, and the simulated slowdown
(:mod:`fedids.device.slowdown`) pads them in proportion.

One device contributes at most one update per aggregation: a fast device that already has an
update in the buffer gets the next global version when it exists, instead of training again
on the same one (which would let fast devices outweigh slow ones).

An update trained on version ``b`` and aggregated into version ``c`` has staleness
``s = c - 1 - b``; it weighs ``m(s) = max(1, round(M / (1 + s) ** a))`` times its data
share (FedBuff's polynomial staleness weight, made an integer so that Paillier ciphertexts
can be raised to it: ``M = max_multiplier`` must not exceed the codec's bound).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: the largest staleness bound a run may ask for (a device's work waits at most this long)
MAX_STALENESS_LIMIT = 16
#: the largest integer staleness multiplier (the codec's headroom grows with it)
MAX_MULTIPLIER_LIMIT = 64
#: the largest ``idle_epochs_factor`` (a device is asked for at most this x local_epochs)
MAX_IDLE_EPOCHS_FACTOR = 8
#: share of the expected wait that extra epochs may fill (the rest absorbs timing noise)
FILL_MARGIN = 0.85

TRIGGER_BUFFER_FULL = "buffer_full"
TRIGGER_TIME = "time_threshold"
TRIGGER_ALL_ARRIVED = "all_arrived"
TRIGGER_FINAL = "final"


class BufferConfigError(ValueError):
    """An ``aggregation.*`` setting that cannot work (one line naming the key)."""


@dataclass(frozen=True)
class BufferSettings:
    """The ``aggregation`` settings of a buffered run, checked."""

    buffer_size: int  # K
    max_staleness: int
    staleness_exponent: float
    max_multiplier: int
    time_factor: float
    smoothing: float  # weight of the newest response time in each device's moving average
    idle_epochs_factor: int = 1  # a device that would wait trains up to this x local_epochs

    @classmethod
    def from_config(
        cls, agg: Mapping[str, Any], *, num_devices: int, min_updates: int
    ) -> BufferSettings:
        """``agg`` is ``cfg.aggregation``; ``buffer_size: null`` means all devices but one."""

        def number(key: str, kind: type, lo: float, hi: float) -> Any:
            value = agg.get(key)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise BufferConfigError(f"aggregation.{key} must be a number, got {value!r}")
            if kind is int and int(value) != value:
                raise BufferConfigError(f"aggregation.{key} must be an integer, got {value!r}")
            if not lo <= value <= hi:
                raise BufferConfigError(f"aggregation.{key}={value} is out of range [{lo}, {hi}]")
            return kind(value)

        size = agg.get("buffer_size")
        if size is None:
            size = max(int(min_updates), int(num_devices) - 1, 1)
        else:
            size = number("buffer_size", int, 1, 10**6)
        if size < min_updates:
            raise BufferConfigError(
                f"aggregation.buffer_size={size} is below federation.min_fit_clients="
                f"{min_updates}: no aggregate could ever be made from a full buffer"
            )
        return cls(
            buffer_size=min(size, max(1, int(num_devices))),
            max_staleness=number("max_staleness", int, 0, MAX_STALENESS_LIMIT),
            staleness_exponent=number("staleness_exponent", float, 0.0, 8.0),
            max_multiplier=number("max_multiplier", int, 1, MAX_MULTIPLIER_LIMIT),
            time_factor=number("time_factor", float, 0.0, 1000.0),
            smoothing=number("response_smoothing", float, 0.01, 1.0),
            idle_epochs_factor=(
                1
                if agg.get("idle_epochs_factor") is None
                else number("idle_epochs_factor", int, 1, MAX_IDLE_EPOCHS_FACTOR)
            ),
        )


def staleness_of(new_version: int, base_version: int) -> int:
    """Versions made between the model an update was trained on and the one it joins."""
    return int(new_version) - 1 - int(base_version)


def staleness_problem(new_version: int, base_version: int, settings: BufferSettings) -> str | None:
    """Why an update trained on ``base_version`` cannot join ``new_version`` (``None``: it can).

    Accepted: ``base_version`` in ``[new_version - 1 - max_staleness, new_version - 1]``."""
    s = staleness_of(new_version, base_version)
    if s < 0:
        return (
            f"claims to be trained on version {base_version}, which does not exist before "
            f"version {new_version}"
        )
    if s > settings.max_staleness:
        return (
            f"trained on version {base_version}, {s} version(s) old for version {new_version} "
            f"(aggregation.max_staleness={settings.max_staleness}); the device trains on the "
            "newest instead"
        )
    return None


def staleness_multiplier(staleness: int, settings: BufferSettings) -> int:
    """The integer weight of an update of this staleness, in ``[1, max_multiplier]``."""
    if staleness < 0:
        raise ValueError(f"staleness {staleness} is negative")
    m = settings.max_multiplier
    raw = m / (1.0 + staleness) ** settings.staleness_exponent
    return max(1, min(m, math.floor(raw + 0.5)))


def epochs_to_fill(
    local_epochs: int,
    wait_seconds: float | None,
    seconds_per_epoch: float | None,
    factor: int,
    fixed_seconds: float = 0.0,
    ceiling: int | None = None,
) -> int:
    """Local epochs for a device whose update would wait ``wait_seconds`` for a slower device:
    as many as fit, with its ``fixed_seconds`` per fit (messages, decryption, evaluation), in
    ``FILL_MARGIN`` of that wait at its measured ``seconds_per_epoch``; at least
    ``local_epochs``, at most ``factor x local_epochs`` and ``ceiling`` (what a device
    accepts). Nothing known: ``local_epochs``."""
    base = max(1, int(local_epochs))
    if factor <= 1 or not wait_seconds or not seconds_per_epoch or seconds_per_epoch <= 0:
        return base
    fit = math.floor((FILL_MARGIN * wait_seconds - max(0.0, fixed_seconds)) / seconds_per_epoch)
    most = int(factor) * base if ceiling is None else min(int(factor) * base, int(ceiling))
    return max(base, min(most, fit))


class ResponseTimes:
    """Each device's recent fit response time (exponential moving average), and BFL's T_W."""

    def __init__(self, smoothing: float) -> None:
        self.smoothing = float(smoothing)
        self.seconds: dict[str, float] = {}
        self.weights: dict[str, float] = {}

    def observe(self, cid: str, seconds: float, weight: float = 1.0) -> None:
        old = self.seconds.get(cid)
        a = self.smoothing
        self.seconds[cid] = seconds if old is None else a * seconds + (1.0 - a) * old
        self.weights[cid] = max(float(weight), 1e-9)

    def weighted_average(
        self, devices: Sequence[str], working_for: Mapping[str, float], min_known: int = 1
    ) -> float | None:
        """T_W over ``devices``: known response times, or for a device never heard from, the
        time it has been working (``working_for``); ``None`` while fewer than ``min_known``
        of ``devices`` have a known response time."""
        if sum(1 for cid in devices if cid in self.seconds) < max(1, int(min_known)):
            return None
        num = den = 0.0
        for cid in devices:
            t = self.seconds.get(cid)
            if t is None:
                t = working_for.get(cid)
            if t is None:
                continue
            w = self.weights.get(cid, 1.0)
            num += w * t
            den += w
        return num / den if den > 0 else None


@dataclass(frozen=True)
class BufferView:
    """What the rule looks at (a snapshot taken by the server after every event)."""

    version: int  # the current global version (the next aggregate makes version + 1)
    final: bool  # the next aggregate is the run's last
    buffered: int  # valid updates in the buffer
    in_flight_bases: Sequence[int]  # base versions of updates still on their way
    since_version: float  # seconds since the current version was made
    threshold: float | None  # time_factor x T_W, or None while nothing is known
    min_updates: int
    pinned: int = 0  # updates on their way that can only join the next version (re-based)


def stranded(view: BufferView, settings: BufferSettings) -> bool:
    """Would aggregating now make an update on its way too stale (or unable) to be used?"""
    return view.pinned > 0 or any(
        staleness_of(view.version + 2, b) > settings.max_staleness for b in view.in_flight_bases
    )


def decide(view: BufferView, settings: BufferSettings) -> str | None:
    """The trigger that fires now, or ``None`` (keep waiting)."""
    if view.buffered < max(1, view.min_updates) or stranded(view, settings):
        return None
    if not view.in_flight_bases:  # (nothing pinned either: stranded() said so)
        return TRIGGER_FINAL if view.final else TRIGGER_ALL_ARRIVED
    if view.final:
        return None
    if view.buffered >= settings.buffer_size:
        return TRIGGER_BUFFER_FULL
    if view.threshold is not None and view.since_version >= view.threshold:
        return TRIGGER_TIME
    return None


def seconds_until_time_trigger(view: BufferView, settings: BufferSettings) -> float | None:
    """How long until the time threshold could fire (``None``: no time-based wake-up needed)."""
    if view.final or view.threshold is None or view.buffered < max(1, view.min_updates):
        return None
    if stranded(view, settings):
        return None
    return max(0.0, view.threshold - view.since_version)
