"""STIX 2.1 bundles for alerts, built with the ``stix2`` library and validated before use.

One bundle per :class:`~fedids.alerts.aggregate.AlertGroup`:

* ``identity``       the detecting device (``identity_class: system``)
* ``indicator``      a STIX pattern naming the addresses, ports and protocols seen, the
                     attack class (``labels``, ``x_fedids_attack_class``) and the model's
                     confidence (``confidence`` 0-100 = mean probability, plus
                     ``x_fedids_probability_mean`` / ``_max``)
* ``sighting``       count, first/last seen, ``where_sighted_refs`` -> the identity
* ``observed-data``  + ``ipv4-addr`` / ``ipv6-addr`` / ``mac-addr`` and ``network-traffic``
                     SCOs for what was observed (when an address is known)

Ids are deterministic: uuid5 of (device, class, source, destination, window), so an alert
sent again (outbox retry, re-run on the same flows) carries the same ids and a receiver
recognizes it. SCO ids follow STIX's own deterministic rule (the library computes them).
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import stix2
from stix2patterns.validator import run_validator

from fedids.alerts.aggregate import AlertGroup

#: namespace of every fedids alert id (never change it: ids would stop matching)
NAMESPACE = uuid.UUID("5f0c3e4e-5a36-5d1b-9f0e-2b7c6a1d9e41")
#: the device identity is the same object in every bundle, so its version is fixed
IDENTITY_EPOCH = datetime(2021, 1, 1, tzinfo=UTC)
#: ports named in a pattern at most (beyond that the pattern leaves ports out)
PATTERN_MAX_PORTS = 16
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


class StixValidationError(ValueError):
    """A message or bundle that is not valid STIX 2.1 (or not a bundle)."""


@dataclass(frozen=True)
class ModelInfo:
    """What the receiver should know about the model that raised the alert."""

    classification: str  # "binary" or "multi"
    sha256: str  # of model.pt, to tell model versions apart


def alert_key(device: str, g: AlertGroup) -> str:
    return _key(device, g.attack_class, g.src, g.dst, g.window_start, g.window_seconds)


def _key(
    device: str, attack_class: str, src: str | None, dst: str | None, start: int, seconds: int
) -> str:
    return "|".join([device, attack_class, src or "", dst or "", str(int(start)), str(seconds)])


def _uuid(*parts: str) -> str:
    return str(uuid.uuid5(NAMESPACE, "|".join(parts)))


def alert_id(device: str, g: AlertGroup) -> str:
    """The deterministic id of an alert (= its bundle id, and the Kafka message key)."""
    return f"bundle--{_uuid('bundle', alert_key(device, g))}"


def alert_id_for(
    device: str,
    attack_class: str,
    src: str | None,
    dst: str | None,
    window_start: int,
    window_seconds: int = 60,
) -> str:
    """The id an alert for these values has (to look one up or recognize a re-send)."""
    key = _key(device, attack_class, src, dst, window_start, window_seconds)
    return f"bundle--{_uuid('bundle', key)}"


def identity_id(device: str) -> str:
    return f"identity--{_uuid('identity', device)}"


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
    stamp = _stamp(now or datetime.now(UTC))
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
    custom = {
        "x_fedids_attack_class": g.attack_class,
        "x_fedids_flow_count": g.count,
        "x_fedids_probability_mean": round(g.prob_mean, 6),
        "x_fedids_probability_max": round(g.prob_max, 6),
        "x_fedids_src_addr": g.src,
        "x_fedids_dst_addr": g.dst,
        "x_fedids_src_ports": list(g.src_ports),
        "x_fedids_src_port_count": g.src_port_count,
        "x_fedids_dst_ports": list(g.dst_ports),
        "x_fedids_dst_port_count": g.dst_port_count,
        "x_fedids_protocols": list(g.protocols),
        "x_fedids_window_start": _stamp(_ts(g.window_start)),
        "x_fedids_window_seconds": g.window_seconds,
        "x_fedids_flow_times": "flow" if g.timed else "detection",
        "x_fedids_device": device,
        "x_fedids_classification": model.classification,
        "x_fedids_model_sha256": model.sha256,
    }
    indicator = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--{_uuid('indicator', key)}",
        "created_by_ref": ident,
        "created": stamp,
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
        **{k: v for k, v in custom.items() if v is not None and v != []},
    }
    objects: list[dict[str, Any]] = [identity, indicator]
    sighting: dict[str, Any] = {
        "type": "sighting",
        "spec_version": "2.1",
        "id": f"sighting--{_uuid('sighting', key)}",
        "created_by_ref": ident,
        "created": stamp,
        "modified": stamp,
        "description": f"{g.attack_class} {where}",
        "confidence": confidence,
        "first_seen": first,
        "last_seen": last,
        "count": g.count,
        "sighting_of_ref": indicator["id"],
        "where_sighted_refs": [ident],
        "x_fedids_attack_class": g.attack_class,
    }
    if traffic:
        scos = [o for o in (src, dst) if o is not None]
        if src is not None and dst is not None and src.id == dst.id:
            scos = [src]
        observed = {
            "type": "observed-data",
            "spec_version": "2.1",
            "id": f"observed-data--{_uuid('observed-data', key)}",
            "created_by_ref": ident,
            "created": stamp,
            "modified": stamp,
            "first_observed": first,
            "last_observed": last,
            "number_observed": max(1, g.count),
            "object_refs": [o.id for o in scos] + [t.id for t in traffic],
        }
        objects += [observed, *(_sco_dict(o) for o in scos), *(_sco_dict(t) for t in traffic)]
        sighting["observed_data_refs"] = [observed["id"]]
    objects.append(sighting)
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
    parsed = validate_bundle(data)
    if parsed.id != alert_id(device, g):
        raise StixValidationError(f"bundle {alert_id(device, g)} did not survive a round trip")
    digest = hashlib.sha256(f"{device}|{model.sha256}|{g.digest()}".encode()).hexdigest()
    return Alert(alert_id=parsed.id, payload=data, digest=digest, group=g)


def build_bundle(
    g: AlertGroup, device: str, model: ModelInfo, now: datetime | None = None
) -> stix2.Bundle:
    """The alert as a validated ``stix2.Bundle`` object."""
    return validate_bundle(bundle_dict(g, device, model, now))


def serialize(bundle: stix2.Bundle) -> bytes:
    """Compact JSON: one bundle per Kafka message / JSONL line."""
    return bundle.serialize(separators=(",", ":")).encode("utf-8")


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


@dataclass(frozen=True)
class AlertSummary:
    """The fields a person reads first, taken from a (fedids or other) STIX bundle."""

    alert_id: str
    attack_class: str
    src: str | None
    dst: str | None
    dst_ports: tuple[int, ...]
    protocols: tuple[str, ...]
    count: int | None
    first_seen: str | None
    last_seen: str | None
    confidence: int | None
    device: str | None

    def line(self) -> str:
        """One readable line: class, src -> dst:port/proto, count, times, confidence, device."""
        ports = ",".join(str(p) for p in self.dst_ports[:5])
        if len(self.dst_ports) > 5:
            ports += ",..."
        proto = ",".join(self.protocols[:3])
        target = self.dst or "?"
        if ports:
            target += f":{ports}"
        if proto:
            target += f"/{proto}"
        conf = f"{self.confidence}%" if self.confidence is not None else "?"
        return (
            f"{self.attack_class:<9} {self.src or '?'} -> {target}  count={self.count} "
            f"first={self.first_seen} last={self.last_seen} confidence={conf} "
            f"device={self.device or '?'}  id={self.alert_id}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "alert_id": self.alert_id,
            "attack_class": self.attack_class,
            "src": self.src,
            "dst": self.dst,
            "dst_ports": list(self.dst_ports),
            "protocols": list(self.protocols),
            "count": self.count,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "confidence": self.confidence,
            "device": self.device,
        }


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"
    return str(value)


def summarize(bundle: Mapping[str, Any]) -> AlertSummary:
    """Summary of a bundle (``stix2.Bundle`` or its JSON data): fedids properties first,
    standard STIX fields as fallback, so bundles from other tools print too."""
    objs = list(bundle.get("objects", []) or [])
    by_type: dict[str, list[Any]] = {}
    for o in objs:
        by_type.setdefault(o["type"], []).append(o)
    ind = (by_type.get("indicator") or [None])[0]
    sig = (by_type.get("sighting") or [None])[0]
    idt = (by_type.get("identity") or [None])[0]

    def get(obj: Any, name: str, default: Any = None) -> Any:
        return obj.get(name, default) if obj is not None else default

    labels = get(ind, "labels") or []
    attack = get(ind, "x_fedids_attack_class") or (labels[0] if labels else "alert")
    return AlertSummary(
        alert_id=str(bundle["id"]),
        attack_class=str(attack),
        src=get(ind, "x_fedids_src_addr"),
        dst=get(ind, "x_fedids_dst_addr"),
        dst_ports=tuple(get(ind, "x_fedids_dst_ports") or ()),
        protocols=tuple(get(ind, "x_fedids_protocols") or ()),
        count=get(sig, "count"),
        first_seen=_iso(get(sig, "first_seen")),
        last_seen=_iso(get(sig, "last_seen")),
        confidence=get(ind, "confidence"),
        device=get(ind, "x_fedids_device") or get(idt, "name"),
    )
