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
from fedids.alerts.errors import AlertsInputError

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
    return "|".join(
        [device, g.attack_class, g.src or "", g.dst or "", str(g.window_start), str(g.window_seconds)]
    )


def _uuid(*parts: str) -> str:
    return str(uuid.uuid5(NAMESPACE, "|".join(parts)))


def alert_id(device: str, g: AlertGroup) -> str:
    """The deterministic id of an alert (= its bundle id, and the Kafka message key)."""
    return f"bundle--{_uuid('bundle', alert_key(device, g))}"


def identity_id(device: str) -> str:
    return f"identity--{_uuid('identity', device)}"


def _ts(epoch: float) -> datetime:
    # millisecond precision: what STIX consumers reliably keep
    return datetime.fromtimestamp(round(epoch, 3), tz=UTC)


def _quote(value: str) -> str:
    """A STIX pattern string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _address(value: str | None) -> stix2.base._Observable | None:
    """An address SCO for a value that is an IPv4/IPv6/MAC address, else None."""
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
    out = []
    for proto, dport in services:
        props: dict[str, Any] = {"protocols": [proto or version]}
        if src is not None:
            props["src_ref"] = src.id
        if dst is not None:
            props["dst_ref"] = dst.id
        if src_port is not None:
            props["src_port"] = src_port
        if dport is not None:
            props["dst_port"] = dport
        out.append(stix2.NetworkTraffic(**props))
    return out


def build_bundle(
    g: AlertGroup, device: str, model: ModelInfo, now: datetime | None = None
) -> stix2.Bundle:
    """The STIX bundle of one alert (validated by the library as it is built)."""
    now = now or datetime.now(UTC)
    key = alert_key(device, g)
    first, last = _ts(g.first_seen), _ts(g.last_seen)
    confidence = max(0, min(100, round(g.prob_mean * 100)))
    identity = stix2.Identity(
        id=identity_id(device),
        name=device,
        identity_class="system",
        description="fedids detecting device",
        created=IDENTITY_EPOCH,
        modified=IDENTITY_EPOCH,
    )
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
        "x_fedids_window_start": _ts(g.window_start).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "x_fedids_window_seconds": g.window_seconds,
        "x_fedids_flow_times": "flow" if g.timed else "detection",
        "x_fedids_device": device,
        "x_fedids_classification": model.classification,
        "x_fedids_model_sha256": model.sha256,
    }
    custom = {k: v for k, v in custom.items() if v is not None and v != []}
    indicator = stix2.Indicator(
        id=f"indicator--{_uuid('indicator', key)}",
        created=now,
        modified=now,
        created_by_ref=identity.id,
        name=f"fedids: {g.attack_class} {where}",
        description=(
            f"{g.count} flow(s) classified {g.attack_class} by the fedids model on {device} "
            f"(mean probability {g.prob_mean:.3f}, max {g.prob_max:.3f})."
        ),
        indicator_types=["malicious-activity"],
        pattern=build_pattern(g, src, dst),
        pattern_type="stix",
        valid_from=first,
        confidence=confidence,
        labels=[g.attack_class],
        allow_custom=True,
        **custom,
    )
    objects: list[Any] = [identity, indicator]
    observed_refs = []
    if traffic:
        scos = [o for o in (src, dst) if o is not None]
        if src is not None and dst is not None and src.id == dst.id:
            scos = [src]
        observed = stix2.ObservedData(
            id=f"observed-data--{_uuid('observed-data', key)}",
            created=now,
            modified=now,
            created_by_ref=identity.id,
            first_observed=first,
            last_observed=last,
            number_observed=max(1, g.count),
            object_refs=[o.id for o in scos] + [t.id for t in traffic],
        )
        objects += [observed, *scos, *traffic]
        observed_refs = [observed.id]
    sighting = stix2.Sighting(
        id=f"sighting--{_uuid('sighting', key)}",
        created=now,
        modified=now,
        created_by_ref=identity.id,
        sighting_of_ref=indicator.id,
        count=g.count,
        first_seen=first,
        last_seen=last,
        where_sighted_refs=[identity.id],
        confidence=confidence,
        description=f"{g.attack_class} {where}",
        allow_custom=True,
        x_fedids_attack_class=g.attack_class,
        **({"observed_data_refs": observed_refs} if observed_refs else {}),
    )
    objects.append(sighting)
    return stix2.Bundle(*objects, id=alert_id(device, g), allow_custom=True)


def serialize(bundle: stix2.Bundle) -> bytes:
    """Compact JSON: one bundle per Kafka message / JSONL line."""
    return bundle.serialize(separators=(",", ":")).encode("utf-8")


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
            errors = run_validator(obj["pattern"], stix_version="2.1")
            if errors:
                raise StixValidationError(f"invalid STIX pattern in {obj['id']}: {errors[0]}")
    return bundle


def round_trip(bundle: stix2.Bundle) -> bytes:
    """Serialize, then prove the bytes parse back as valid STIX with the same id."""
    data = serialize(bundle)
    parsed = validate_bundle(data)
    if parsed.id != bundle.id:
        raise AlertsInputError(f"bundle {bundle.id} did not survive a STIX round trip")
    return data


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


def summarize(bundle: stix2.Bundle) -> AlertSummary:
    """Summary of a validated bundle (fedids properties first, STIX fields as fallback)."""
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
        alert_id=bundle.id,
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
