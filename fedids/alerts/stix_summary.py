"""The fields a person reads first, from any STIX bundle (fedids or another tool's)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fedids.alerts.stix_extension import PUBLISHER_ID, details


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
    where = (sig.get("where_sighted_refs") or [None])[0] if sig is not None else None
    identities = [i for i in by_type.get("identity", []) if i["id"] != PUBLISHER_ID]
    idt = next((i for i in identities if i["id"] == where), identities[0] if identities else None)

    def get(obj: Any, name: str, default: Any = None) -> Any:
        return obj.get(name, default) if obj is not None else default

    labels = get(ind, "labels") or []
    ext = details(ind)
    attack = ext.get("attack_class") or (labels[0] if labels else "alert")
    return AlertSummary(
        alert_id=str(bundle["id"]),
        attack_class=str(attack),
        src=ext.get("src_addr"),
        dst=ext.get("dst_addr"),
        dst_ports=tuple(ext.get("dst_ports") or ()),
        protocols=tuple(ext.get("protocols") or ()),
        count=get(sig, "count"),
        first_seen=_iso(get(sig, "first_seen")),
        last_seen=_iso(get(sig, "last_seen")),
        confidence=get(ind, "confidence"),
        device=ext.get("device") or get(idt, "name"),
    )
