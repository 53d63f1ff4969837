"""STIX 2.1 bundles for alerts, built with the ``stix2`` library and validated before use.

One bundle per :class:`~fedids.alerts.aggregate.AlertGroup`:

* ``identity``       the detecting device (``identity_class: system``)
* ``indicator``      a STIX pattern naming the addresses, ports and protocols seen, the
                     attack class (``labels``) and the model's confidence (``confidence``
                     0-100 = mean probability); details in the fedids property extension
* ``sighting``       count, first/last seen, ``where_sighted_refs`` -> the identity
* ``observed-data``  + ``ipv4-addr`` / ``ipv6-addr`` / ``mac-addr`` and ``network-traffic``
                     SCOs for what was observed (when an address is known)
* ``extension-definition`` + its creator ``identity``: the fedids property extension
                     (:mod:`fedids.alerts.stix_extension`), the same two objects everywhere

Ids are deterministic (:mod:`fedids.alerts.stix_ids`), so an alert sent again, or a newer
version of it, carries the same ids. SCO ids follow STIX's own deterministic rule (the
library computes them). ``created`` is the start of the window in which the burst began
(the same for every version of an alert), ``modified`` the detection time.

Validation and summaries live in :mod:`fedids.alerts.stix_validate` and
:mod:`fedids.alerts.stix_summary` (re-exported here).
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import stix2

from fedids.alerts.aggregate import AlertGroup
from fedids.alerts.stix_extension import extension, extension_definition, publisher_identity
from fedids.alerts.stix_ids import alert_id, alert_id_for, alert_key, identity_id, uuid_for
from fedids.alerts.stix_summary import AlertSummary, summarize
from fedids.alerts.stix_validate import StixValidationError, pattern_errors, validate_bundle

__all__ = [
    "Alert",
    "AlertSummary",
    "ModelInfo",
    "StixValidationError",
    "alert_id",
    "alert_id_for",
    "build_alert",
    "build_bundle",
    "bundle_dict",
    "identity_id",
    "pattern_errors",
    "serialize",
    "summarize",
    "validate_bundle",
]
#: the device identity is the same object in every bundle, so its version is fixed
IDENTITY_EPOCH = datetime(2021, 1, 1, tzinfo=UTC)
#: any group, to name the bundle that validates the constant objects once
_PROBE = AlertGroup("-", None, None, 0, 60, 1, 0.0, 0.0, 1.0, 1.0, (), 0, (), 0, (), (), True)
#: ports named in a pattern at most (beyond that the pattern leaves ports out)
PATTERN_MAX_PORTS = 16
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


@dataclass(frozen=True)
class ModelInfo:
    """What the receiver should know about the model that raised the alert."""

    classification: str  # "binary" or "multi"
    sha256: str  # of model.pt, to tell model versions apart


def _ts(epoch: float) -> datetime:
    # millisecond precision: what STIX consumers reliably keep
    return datetime.fromtimestamp(round(epoch, 3), tz=UTC)


def _quote(value: str) -> str:
    """A STIX pattern string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@functools.lru_cache(maxsize=4096)
def _address(value: str | None) -> stix2.base._Observable | None:
    """An address SCO for a value that is an IPv4/IPv6/MAC address, else None.

    Cached: the same hosts appear in many alerts, and SCOs are immutable.
    """
    if not value:
        return None
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        mac = value.lower().replace("-", ":")
        return stix2.MACAddress(value=mac) if _MAC.match(mac) else None
    if ip.version == 4:
        return stix2.IPv4Address(value=str(ip))
    return stix2.IPv6Address(value=str(ip))


def _in(path: str, values: list[str]) -> str:
    return f"{path} = {values[0]}" if len(values) == 1 else f"{path} IN ({', '.join(values)})"


def build_pattern(
    g: AlertGroup, src: stix2.base._Observable | None, dst: stix2.base._Observable | None
) -> str:
    """A STIX pattern over one network-traffic object naming what is known of the flows."""
    terms = []
    if src is not None:
        terms.append(f"network-traffic:src_ref.value = {_quote(src.value)}")
    if dst is not None:
        terms.append(f"network-traffic:dst_ref.value = {_quote(dst.value)}")
    if 0 < g.src_port_count <= PATTERN_MAX_PORTS:
        terms.append(_in("network-traffic:src_port", [str(p) for p in sorted(g.src_ports)]))
    if 0 < g.dst_port_count <= PATTERN_MAX_PORTS:
        terms.append(_in("network-traffic:dst_port", [str(p) for p in sorted(g.dst_ports)]))
    if g.protocols:
        terms.append(_in("network-traffic:protocols[*]", [_quote(p) for p in sorted(g.protocols)]))
    if not terms:
        # nothing observable is known: name the detection itself (custom object type)
        terms.append(f"x-fedids-detection:attack_class = {_quote(g.attack_class)}")
    return "[" + " AND ".join(terms) + "]"


def _traffic(
    g: AlertGroup, src: stix2.base._Observable | None, dst: stix2.base._Observable | None
) -> list[stix2.NetworkTraffic]:
    """network-traffic SCOs, one per (protocol, destination port) seen (most frequent)."""
    if src is None and dst is None:
        return []
    version = "ipv6" if isinstance(src or dst, stix2.IPv6Address) else "ipv4"
    src_port = g.src_ports[0] if g.src_port_count == 1 else None
    services = list(g.services) or [(None, None)]
    src_id = src.id if src is not None else None
    dst_id = dst.id if dst is not None else None
    return [
        _network_traffic(proto or version, src_id, dst_id, src_port, dport)
        for proto, dport in services
    ]


@functools.lru_cache(maxsize=8192)
def _network_traffic(
    proto: str, src_id: str | None, dst_id: str | None, sport: int | None, dport: int | None
) -> stix2.NetworkTraffic:
    """One network-traffic SCO (cached like :func:`_address`; the library sets its id)."""
    props: dict[str, Any] = {"protocols": [proto]}
    for name, value in (
        ("src_ref", src_id),
        ("dst_ref", dst_id),
        ("src_port", sport),
        ("dst_port", dport),
    ):
        if value is not None:
            props[name] = value
    return stix2.NetworkTraffic(**props)


def _stamp(value: datetime) -> str:
    """A STIX timestamp (UTC, millisecond precision)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _sco_dict(obj: Any) -> dict[str, Any]:
    return {k: v for k, v in dict(obj).items() if k != "defanged" or v}


def bundle_dict(
    g: AlertGroup, device: str, model: ModelInfo, now: datetime | None = None
) -> dict[str, Any]:
    """The STIX bundle of one alert as plain JSON data (not yet validated).

    SDOs are written as data and validated once by :func:`validate_bundle` (constructing
    them with the library first would run the slow pattern grammar twice); SCOs are made
    by the library, which computes their standard deterministic ids.
    """
    when = now or datetime.now(UTC)
    stamp = _stamp(when)
    created = _stamp(min(_ts(g.window_start), when))  # the same for every version
    key = alert_key(device, g)
    first, last = _stamp(_ts(g.first_seen)), _stamp(_ts(g.last_seen))
    confidence = max(0, min(100, round(g.prob_mean * 100)))
    ident = identity_id(device)
    identity = {
        "type": "identity",
        "spec_version": "2.1",
        "id": ident,
        "created": _stamp(IDENTITY_EPOCH),
        "modified": _stamp(IDENTITY_EPOCH),
        "name": device,
        "description": "fedids detecting device",
        "identity_class": "system",
    }
    src, dst = _address(g.src), _address(g.dst)
    traffic = _traffic(g, src, dst)
    where = f"{g.src or 'unknown source'} -> {g.dst or 'unknown destination'}"
    details = {
        "attack_class": g.attack_class,
        "flow_count": g.count,
        "probability_mean": round(g.prob_mean, 6),
        "probability_max": round(g.prob_max, 6),
        "src_addr": g.src,
        "dst_addr": g.dst,
        "src_ports": list(g.src_ports),
        "src_port_count": g.src_port_count,
        "dst_ports": list(g.dst_ports),
        "dst_port_count": g.dst_port_count,
        "protocols": list(g.protocols),
        "window_start": _stamp(_ts(g.window_start)),
        "window_end": _stamp(_ts(g.window_end)),
        "window_seconds": g.window_seconds,
        "flow_times": "flow" if g.timed else "detection",
        "device": device,
        "classification": model.classification,
        "model_sha256": model.sha256,
    }
    indicator = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--{uuid_for('indicator', key)}",
        "created_by_ref": ident,
        "created": created,
        "modified": stamp,
        "name": f"fedids: {g.attack_class} {where}",
        "description": (
            f"{g.count} flow(s) classified {g.attack_class} by the fedids model on {device} "
            f"(mean probability {g.prob_mean:.3f}, max {g.prob_max:.3f})."
        ),
        "indicator_types": ["malicious-activity"],
        "pattern": build_pattern(g, src, dst),
        "pattern_type": "stix",
        "pattern_version": "2.1",
        "valid_from": first,
        "confidence": confidence,
        "labels": [g.attack_class],
        **extension(details),
    }
    objects: list[dict[str, Any]] = [identity, indicator]
    sighting: dict[str, Any] = {
        "type": "sighting",
        "spec_version": "2.1",
        "id": f"sighting--{uuid_for('sighting', key)}",
        "created_by_ref": ident,
        "created": created,
        "modified": stamp,
        "description": f"{g.attack_class} {where}",
        "confidence": confidence,
        "first_seen": first,
        "last_seen": last,
        "count": g.count,
        "sighting_of_ref": indicator["id"],
        "where_sighted_refs": [ident],
        **extension({"attack_class": g.attack_class}),
    }
    if traffic:
        scos = [o for o in (src, dst) if o is not None]
        if src is not None and dst is not None and src.id == dst.id:
            scos = [src]
        observed = {
            "type": "observed-data",
            "spec_version": "2.1",
            "id": f"observed-data--{uuid_for('observed-data', key)}",
            "created_by_ref": ident,
            "created": created,
            "modified": stamp,
            "first_observed": first,
            "last_observed": last,
            "number_observed": max(1, g.count),
            "object_refs": [o.id for o in scos] + [t.id for t in traffic],
        }
        objects += [observed, *(_sco_dict(o) for o in scos), *(_sco_dict(t) for t in traffic)]
        sighting["observed_data_refs"] = [observed["id"]]
    objects += [sighting, extension_definition(), publisher_identity()]
    return {"type": "bundle", "id": alert_id(device, g), "objects": objects}


@dataclass(frozen=True)
class Alert:
    """A validated alert ready to store and send: ``payload`` is the exact wire form."""

    alert_id: str
    payload: bytes
    digest: str
    group: AlertGroup


def build_alert(g: AlertGroup, device: str, model: ModelInfo, now: datetime | None = None) -> Alert:
    """Build one alert and prove its wire bytes are valid STIX 2.1 (round trip through
    ``stix2.parse`` + pattern validation); raises if they are not."""
    data = json.dumps(bundle_dict(g, device, model, now), separators=(",", ":")).encode()
    parsed = validate_bundle(_without_constants(data))
    if parsed.id != alert_id(device, g):
        raise StixValidationError(f"bundle {alert_id(device, g)} did not survive a round trip")
    digest = hashlib.sha256(f"{device}|{model.sha256}|{g.digest()}".encode()).hexdigest()
    return Alert(alert_id=parsed.id, payload=data, digest=digest, group=g)


@functools.cache
def _constants_checked() -> frozenset[str]:
    """Validate the two objects every bundle carries unchanged, once; their ids."""
    fixed = [extension_definition(), publisher_identity()]
    validate_bundle({"type": "bundle", "id": alert_id("-", _PROBE), "objects": fixed})
    return frozenset(o["id"] for o in fixed)


def _without_constants(payload: bytes) -> dict[str, Any]:
    """The bundle read back from its wire bytes, minus the constant objects if they are
    byte-for-byte the validated ones (they cost a fifth of the validation otherwise)."""
    data = json.loads(payload)
    fixed = _constants_checked()
    known = {o["id"]: o for o in (extension_definition(), publisher_identity())}
    data["objects"] = [
        o for o in data["objects"] if not (o.get("id") in fixed and o == known[o["id"]])
    ]
    return data


def build_bundle(
    g: AlertGroup, device: str, model: ModelInfo, now: datetime | None = None
) -> stix2.Bundle:
    """The alert as a validated ``stix2.Bundle`` object."""
    return validate_bundle(bundle_dict(g, device, model, now))


def serialize(bundle: stix2.Bundle) -> bytes:
    """Compact JSON: one bundle per Kafka message / JSONL line."""
    return bundle.serialize(separators=(",", ":")).encode("utf-8")
