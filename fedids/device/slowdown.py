"""Simulated heterogeneity: a device told to be ``f`` times slower really is (experiments only).

Benchmarks of buffered aggregation need a slow site whose slowness is real wall-clock time,
seen by the server exactly as a slow PLC gateway would be. The factor comes from the
run-config (``aggregation.slowdown``: ``{partition id: factor}`` or a list of factors by
partition id): it is an experiment knob, not a privacy setting, and the most it can do to
a device is make it sleep, so it is bounded (``MAX_FACTOR``). After a fit, the device
sleeps ``(f - 1)`` times its measured training time, so its training takes ``f`` times as
long as it would have (decryption, encryption and evaluation are not slowed).

On a machine shared with other work, measured training times follow the machine's load, and
so would a slowdown proportional to them. ``aggregation.slowdown_base_seconds`` (``b``,
default 0: off) pins the simulated speeds instead: every device's training then takes at
least ``f x b`` seconds (it sleeps the difference), ``f = 1`` for devices not listed, or
``f`` times its real training time if that is longer. ``b`` is for a fit of
``local_epochs`` epochs: a fit asked for more (a buffered run filling a wait,
:func:`fedids.server.buffer_rule.epochs_to_fill`) takes proportionally longer.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from fedids.protocol import ProtocolError

#: the largest slowdown a run-config may ask of a device
MAX_FACTOR = 50.0
#: the longest simulated training time per fit (seconds)
MAX_BASE_SECONDS = 600.0


def slowdown_factor(spec: Any, partition_id: int) -> float:
    """This partition's factor from ``aggregation.slowdown`` (1.0 when not listed)."""
    if spec in (None, "", {}, []):
        return 1.0
    value: Any = 1.0
    if isinstance(spec, Mapping):
        for key, factor in spec.items():
            try:
                matches = int(key) == int(partition_id)
            except (TypeError, ValueError):
                raise ProtocolError(
                    f"aggregation.slowdown key {key!r} is not a partition id"
                ) from None
            if matches:
                value = factor
    elif isinstance(spec, Sequence) and not isinstance(spec, str | bytes):
        if partition_id < len(spec):
            value = spec[partition_id]
    else:
        raise ProtocolError(
            f"aggregation.slowdown must map partition ids to factors or list them, got {spec!r}"
        )
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProtocolError(f"aggregation.slowdown factor {value!r} is not a number")
    if not 1.0 <= float(value) <= MAX_FACTOR:
        raise ProtocolError(
            f"aggregation.slowdown factor {value} for partition {partition_id} is outside "
            f"[1, {MAX_FACTOR:g}]"
        )
    return float(value)


def base_seconds(value: Any) -> float:
    """``aggregation.slowdown_base_seconds``, checked (0 when unset)."""
    if value in (None, ""):
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProtocolError(f"aggregation.slowdown_base_seconds {value!r} is not a number")
    if not 0.0 <= float(value) <= MAX_BASE_SECONDS:
        raise ProtocolError(
            f"aggregation.slowdown_base_seconds={value} is outside [0, {MAX_BASE_SECONDS:g}]"
        )
    return float(value)


def pause_for_slowdown(
    cfg: Mapping[str, Any], partition_id: int, train_seconds: float, work: float = 1.0
) -> float:
    """Sleep so that training took ``max(factor x train_seconds, factor x base x work)``
    (``work``: epochs trained over the run's ``local_epochs``); returns the seconds slept."""
    agg = cfg.get("aggregation") or {}
    factor = slowdown_factor(agg.get("slowdown"), partition_id)
    base = base_seconds(agg.get("slowdown_base_seconds"))
    worked = max(0.0, float(train_seconds))
    pause = max((factor - 1.0) * worked, factor * base * max(0.0, work) - worked, 0.0)
    if pause > 0:
        time.sleep(pause)
    return pause
