"""Simulated heterogeneity: a device told to be ``f`` times slower really is (experiments only).

Benchmarks of buffered aggregation need a slow site whose slowness is real wall-clock time,
seen by the server exactly as a slow PLC gateway would be. The factor comes from the
run-config (``aggregation.slowdown``: ``{partition id: factor}`` or a list of factors by
partition id): it is an experiment knob, not a privacy setting, and the most it can do to
a device is make it sleep, so it is bounded (``MAX_FACTOR``). After a fit, the device
sleeps ``(f - 1)`` times its measured training time, so its training takes ``f`` times as
long as it would have (decryption, encryption and evaluation are not slowed).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from fedids.protocol import ProtocolError

#: the largest slowdown a run-config may ask of a device
MAX_FACTOR = 50.0


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


def pause_for_slowdown(cfg: Mapping[str, Any], partition_id: int, worked_seconds: float) -> float:
    """Sleep ``(factor - 1) x worked_seconds`` (the training time); returns the seconds slept."""
    spec = (cfg.get("aggregation") or {}).get("slowdown")
    factor = slowdown_factor(spec, partition_id)
    pause = (factor - 1.0) * max(0.0, float(worked_seconds))
    if pause > 0:
        time.sleep(pause)
    return pause
