"""The fedids STIX 2.1 property extension: alert details as an Extension Definition.

STIX 2.1 (section 7.3) asks producers to put their own properties in an *extension*
rather than in ``x_`` custom properties: a receiver can then look the extension up by
its id, know who defined it and what each property means, and tell its versions apart.
``stix2-validator`` warns ({401}) about every ``x_`` property otherwise.

The definition is one fixed ``extension-definition`` object (its id is a constant
UUIDv4, its creator the constant "fedids" identity); both travel in every bundle, so a
bundle is self-describing. Indicators and sightings carry the details under
``extensions[EXTENSION_ID]`` with ``extension_type: property-extension``.

Never change the id, the creator or ``created`` of version 1.0.0: receivers match on
them. A change of meaning needs a new id; an added optional property a new ``version``
and ``modified``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

EXTENSION_ID = "extension-definition--76eda75d-cec0-4484-9944-079c626e8f24"
PUBLISHER_ID = "identity--734d213d-9155-496d-9133-d881d4ef5050"
VERSION = "1.0.0"
DEFINED = "2026-11-27T00:00:00.000Z"

#: indicator properties of the extension: name -> (JSON type, meaning)
INDICATOR_PROPERTIES: dict[str, tuple[str, str]] = {
    "attack_class": ("string", "class the model gave the flows (e.g. DoS, Reconn; 'attack')"),
    "flow_count": ("integer", "flows in the alert"),
    "probability_mean": ("number", "mean model probability of attack_class over the flows"),
    "probability_max": ("number", "highest such probability"),
    "src_addr": ("string", "source address as written in the flows"),
    "dst_addr": ("string", "destination address as written in the flows"),
    "src_ports": ("array of integer", "source ports, most frequent first (at most 64)"),
    "src_port_count": ("integer", "distinct source ports (a lower bound past 64, streaming)"),
    "dst_ports": ("array of integer", "destination ports, most frequent first (at most 64)"),
    "dst_port_count": ("integer", "distinct destination ports (same rule)"),
    "protocols": ("array of string", "protocols seen (lowercase IANA names)"),
    "window_start": ("timestamp", "start of the window in which the burst began (alert key)"),
    "window_end": ("timestamp", "end of the last window the burst reached so far"),
    "window_seconds": ("integer", "window length (--window)"),
    "flow_times": ("string", "'flow': times from the flows; 'detection': flows had none"),
    "device": ("string", "detecting device (--device-name)"),
    "classification": ("string", "'binary' or 'multi': the model's task"),
    "model_sha256": ("string", "first 16 hex digits of the SHA-256 of model.pt"),
}
#: sighting properties of the extension
SIGHTING_PROPERTIES: dict[str, tuple[str, str]] = {
    "attack_class": INDICATOR_PROPERTIES["attack_class"],
}


def _schema_text() -> str:
    """The normative definition (STIX allows plain text in ``schema``)."""

    def describe(props: Mapping[str, tuple[str, str]]) -> str:
        return "; ".join(f"{name} ({kind}): {meaning}" for name, (kind, meaning) in props.items())

    return (
        "fedids alert details, a STIX 2.1 property-extension. All properties optional. "
        f"On indicator: {describe(INDICATOR_PROPERTIES)}. "
        f"On sighting: {describe(SIGHTING_PROPERTIES)}. "
        "Timestamps are STIX timestamps (UTC, millisecond precision)."
    )


def publisher_identity() -> dict[str, Any]:
    """The identity that defines the extension (the same object in every bundle)."""
    return {
        "type": "identity",
        "spec_version": "2.1",
        "id": PUBLISHER_ID,
        "created": DEFINED,
        "modified": DEFINED,
        "name": "fedids",
        "description": "fedids federated intrusion detection (defines the fedids STIX extension)",
        "identity_class": "system",
    }


def extension_definition() -> dict[str, Any]:
    """The Extension Definition SDO (the same object in every bundle)."""
    return {
        "type": "extension-definition",
        "spec_version": "2.1",
        "id": EXTENSION_ID,
        "created_by_ref": PUBLISHER_ID,
        "created": DEFINED,
        "modified": DEFINED,
        "name": "fedids alert details",
        "description": (
            "Detection details of fedids alerts: model verdicts aggregated per attack class, "
            "source, destination and burst."
        ),
        "schema": _schema_text(),
        "version": VERSION,
        "extension_types": ["property-extension"],
    }


def extension(props: Mapping[str, Any]) -> dict[str, Any]:
    """``{"extensions": ...}`` carrying ``props`` (None and empty lists left out)."""
    body = {k: v for k, v in props.items() if v is not None and v != []}
    return {"extensions": {EXTENSION_ID: {"extension_type": "property-extension", **body}}}


def details(obj: Any) -> dict[str, Any]:
    """The extension's properties of a STIX object (dict or ``stix2`` object).

    Bundles written by fedids before the extension existed carried them as ``x_fedids_*``
    custom properties; those are read too, so such messages still print.
    """
    if obj is None:
        return {}
    ext = (obj.get("extensions") or {}).get(EXTENSION_ID)
    if ext:
        return {k: v for k, v in dict(ext).items() if k != "extension_type"}
    prefix = "x_fedids_"
    return {k[len(prefix) :]: v for k, v in dict(obj).items() if k.startswith(prefix)}
