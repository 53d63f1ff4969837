"""Validation of STIX 2.1 bundles: ``stix2.parse`` plus the STIX pattern grammar.

Every alert fedids builds goes through :func:`validate_bundle` before it is stored or
sent, and ``fedids subscribe`` validates every message it receives the same way.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

import stix2
from stix2patterns.validator import run_validator


class StixValidationError(ValueError):
    """A message or bundle that is not valid STIX 2.1 (or not a bundle)."""


@functools.lru_cache(maxsize=8192)
def _validate_pattern(pattern: str, version: str) -> tuple[str, ...]:
    return tuple(str(e) for e in run_validator(pattern, stix_version=version))


def pattern_errors(pattern: str, version: str = "2.1") -> list[str]:
    """stix2-patterns validator errors for a STIX pattern (empty: valid).

    Cached: the ANTLR grammar costs about 2 ms per pattern and the same hosts, ports and
    protocols give the same pattern in many alerts.
    """
    return list(_validate_pattern(pattern, version))


def _share_pattern_cache() -> None:
    """Let ``stix2``'s own Indicator check use the same cache (it calls the same validator).

    The result is the same function of (pattern, version); only repeated work is saved.
    Skipped silently if a future stix2 release checks patterns differently.
    """
    from stix2.v21 import sdo

    if getattr(sdo, "run_validator", None) is run_validator:
        sdo.run_validator = pattern_errors


_share_pattern_cache()


def validate_bundle(payload: str | bytes | Mapping[str, Any]) -> stix2.Bundle:
    """Parse a message as a STIX 2.1 bundle and check every STIX pattern in it.

    ``stix2.parse`` checks object types, required properties, references and timestamps;
    the stix2-patterns validator is run explicitly on every ``pattern_type: stix`` pattern.
    """
    try:
        if isinstance(payload, bytes | bytearray):
            payload = payload.decode("utf-8")
        data = json.loads(payload) if isinstance(payload, str) else dict(payload)
    except (UnicodeDecodeError, json.JSONDecodeError, TypeError, ValueError) as exc:
        raise StixValidationError(f"not JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("type") != "bundle":
        raise StixValidationError("not a STIX bundle (type != 'bundle')")
    try:
        bundle = stix2.parse(data, allow_custom=True, version="2.1")
    except Exception as exc:  # stix2 raises many exception types
        raise StixValidationError(f"invalid STIX 2.1: {exc}") from exc
    for obj in bundle.get("objects", []) or []:
        if obj.get("type") == "indicator" and obj.get("pattern_type") == "stix":
            errors = pattern_errors(obj["pattern"], obj.get("pattern_version") or "2.1")
            if errors:
                raise StixValidationError(f"invalid STIX pattern in {obj['id']}: {errors[0]}")
    return bundle
