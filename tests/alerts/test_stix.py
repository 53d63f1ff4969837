"""STIX 2.1 validity, patterns, content and deterministic ids of alert bundles."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import pytest
import stix2
from stix2patterns.validator import run_validator

from fedids.alerts.aggregate import AlertGroup
from fedids.alerts.stix import (
    PATTERN_MAX_PORTS,
    ModelInfo,
    StixValidationError,
    alert_id,
    build_alert,
    build_bundle,
    identity_id,
    summarize,
    validate_bundle,
)
from fedids.alerts.stix_extension import (
    EXTENSION_ID,
    PUBLISHER_ID,
    details,
    extension_definition,
    publisher_identity,
)

MODEL = ModelInfo("multi", "0123456789abcdef")
NOW = datetime(2022, 1, 1, 0, 5, tzinfo=UTC)


def group(**kw) -> AlertGroup:
    base = dict(
        attack_class="DoS",
        src="10.0.0.5",
        dst="10.0.0.9",
        window_start=1_640_995_200,
        window_seconds=60,
        count=12,
        first_seen=1_640_995_201.25,
        last_seen=1_640_995_230.5,
        prob_mean=0.934,
        prob_max=0.999,
        src_ports=(40001,),
        src_port_count=1,
        dst_ports=(502,),
        dst_port_count=1,
        protocols=("tcp",),
        services=(("tcp", 502),),
        timed=True,
    )
    base.update(kw)
    return AlertGroup(**base)


def objects(alert) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for o in json.loads(alert.payload)["objects"]:
        out.setdefault(o["type"], []).append(o)
    return out


def test_bundle_is_valid_stix_and_round_trips():
    a = build_alert(group(), "plc-7", MODEL, NOW)
    parsed = stix2.parse(a.payload.decode(), allow_custom=True)
    assert isinstance(parsed, stix2.Bundle) and parsed.id == a.alert_id
    # no custom properties: the details are in a registered-by-id property extension,
    # so even a strict parse accepts the bundle
    strict = stix2.parse(a.payload.decode(), allow_custom=False)
    assert strict.id == a.alert_id
    assert b"x_fedids" not in a.payload
    again = stix2.parse(parsed.serialize(), allow_custom=True)
    assert again.id == parsed.id and len(again.objects) == len(parsed.objects)


def test_pattern_names_addresses_port_and_protocol():
    ind = objects(build_alert(group(), "plc-7", MODEL, NOW))["indicator"][0]
    assert ind["pattern"] == (
        "[network-traffic:src_ref.value = '10.0.0.5' AND network-traffic:dst_ref.value = "
        "'10.0.0.9' AND network-traffic:src_port = 40001 AND network-traffic:dst_port = 502 "
        "AND network-traffic:protocols[*] = 'tcp']"
    )
    assert run_validator(ind["pattern"]) == []
    assert ind["pattern_type"] == "stix" and ind["pattern_version"] == "2.1"


def test_alert_content_class_confidence_sighting_and_observations():
    objs = objects(build_alert(group(), "plc-7", MODEL, NOW))
    ind, sig, ident = objs["indicator"][0], objs["sighting"][0], objs["identity"][0]
    assert ident["id"] == identity_id("plc-7") and ident["identity_class"] == "system"
    ext = details(ind)
    assert ind["labels"] == ["DoS"] and ext["attack_class"] == "DoS"
    assert ind["indicator_types"] == ["malicious-activity"]
    assert ind["confidence"] == 93
    assert ext["probability_mean"] == pytest.approx(0.934)
    assert ext["probability_max"] == pytest.approx(0.999)
    assert ext["model_sha256"] == MODEL.sha256
    assert (ext["window_start"], ext["window_end"]) == (
        "2022-01-01T00:00:00.000Z",
        "2022-01-01T00:01:00.000Z",
    )
    assert details(sig) == {"attack_class": "DoS"}
    assert ind["valid_from"] == "2022-01-01T00:00:01.250Z"
    assert sig["count"] == 12 and sig["sighting_of_ref"] == ind["id"]
    assert sig["where_sighted_refs"] == [ident["id"]]
    assert (sig["first_seen"], sig["last_seen"]) == (
        "2022-01-01T00:00:01.250Z",
        "2022-01-01T00:00:30.500Z",
    )
    od = objs["observed-data"][0]
    assert sig["observed_data_refs"] == [od["id"]] and od["number_observed"] == 12
    assert [o["value"] for o in objs["ipv4-addr"]] == ["10.0.0.5", "10.0.0.9"]
    nt = objs["network-traffic"][0]
    assert nt["dst_port"] == 502 and nt["src_port"] == 40001 and nt["protocols"] == ["tcp"]
    assert set(od["object_refs"]) == {o["id"] for o in objs["ipv4-addr"]} | {nt["id"]}


def test_ids_are_deterministic():
    a = build_alert(group(), "plc-7", MODEL, NOW)
    b = build_alert(group(), "plc-7", MODEL, datetime(2030, 1, 1, tzinfo=UTC))
    assert a.alert_id == b.alert_id == alert_id("plc-7", group())
    ids_a = [o["id"] for o in json.loads(a.payload)["objects"]]
    ids_b = [o["id"] for o in json.loads(b.payload)["objects"]]
    assert ids_a == ids_b
    # the count may change between versions of one alert; the id does not
    assert build_alert(group(count=13), "plc-7", MODEL, NOW).alert_id == a.alert_id
    assert build_alert(group(count=13), "plc-7", MODEL, NOW).digest != a.digest


@pytest.mark.parametrize(
    "change",
    [
        {"attack_class": "Reconn"},
        {"src": "10.0.0.6"},
        {"dst": "10.0.0.8"},
        {"window_start": 1_640_995_260},
        {"window_seconds": 300},
    ],
)
def test_ids_differ_per_class_address_and_window(change):
    assert alert_id("plc-7", group(**change)) != alert_id("plc-7", group())


def test_ids_differ_per_device():
    assert alert_id("plc-8", group()) != alert_id("plc-7", group())


def test_many_ports_are_left_out_of_the_pattern_but_kept_in_properties():
    ports = tuple(range(1, PATTERN_MAX_PORTS + 6))
    g = group(dst_ports=ports, dst_port_count=len(ports), src_port_count=900, src_ports=(1, 2))
    ind = objects(build_alert(g, "plc-7", MODEL, NOW))["indicator"][0]
    assert "dst_port" not in ind["pattern"] and "src_port" not in ind["pattern"]
    assert details(ind)["dst_port_count"] == len(ports)
    g = group(dst_ports=(80, 502), dst_port_count=2, protocols=("tcp", "udp"))
    ind = objects(build_alert(g, "plc-7", MODEL, NOW))["indicator"][0]
    assert "network-traffic:dst_port IN (80, 502)" in ind["pattern"]
    assert "network-traffic:protocols[*] IN ('tcp', 'udp')" in ind["pattern"]


def test_no_addresses_still_gives_a_valid_alert():
    g = group(src=None, dst=None)
    a = build_alert(g, "plc-7", MODEL, NOW)
    objs = objects(a)
    assert "observed-data" not in objs and "network-traffic" not in objs
    assert objs["indicator"][0]["pattern"] == (
        "[network-traffic:src_port = 40001 AND network-traffic:dst_port = 502 AND "
        "network-traffic:protocols[*] = 'tcp']"
    )
    bare = group(
        src=None,
        dst=None,
        src_ports=(),
        src_port_count=0,
        dst_ports=(),
        dst_port_count=0,
        protocols=(),
        services=(),
    )
    ind = objects(build_alert(bare, "plc-7", MODEL, NOW))["indicator"][0]
    assert ind["pattern"] == "[x-fedids-detection:attack_class = 'DoS']"


def test_ipv6_mac_hostnames_and_quotes():
    g = group(src="fe80::1", dst="AA-BB-CC-DD-EE-FF", attack_class="it's")
    objs = objects(build_alert(g, "dev'1", MODEL, NOW))
    assert objs["ipv6-addr"][0]["value"] == "fe80::1"
    assert objs["mac-addr"][0]["value"] == "aa:bb:cc:dd:ee:ff"
    assert objs["network-traffic"][0]["protocols"] == ["tcp"]
    host = objects(build_alert(group(src="plc.local"), "d", MODEL, NOW))
    assert "plc.local" not in host["indicator"][0]["pattern"]  # not an address: not a ref
    assert details(host["indicator"][0])["src_addr"] == "plc.local"


def test_build_bundle_returns_library_objects():
    b = build_bundle(group(), "plc-7", MODEL, NOW)
    assert isinstance(b, stix2.Bundle)
    assert {o.type for o in b.objects} >= {"identity", "indicator", "sighting"}


@pytest.mark.parametrize(
    "payload, reason",
    [
        (b"\xff\xfe", "not JSON"),
        (b"{not json", "not JSON"),
        (b'{"type": "indicator"}', "not a STIX bundle"),
        (b"[1, 2]", "not a STIX bundle"),
    ],
)
def test_validate_rejects_garbage(payload, reason):
    with pytest.raises(StixValidationError, match=reason):
        validate_bundle(payload)


def test_validate_rejects_a_bad_pattern():
    data = json.loads(build_alert(group(), "plc-7", MODEL, NOW).payload)
    ind = next(o for o in data["objects"] if o["type"] == "indicator")
    ind["pattern"] = "[network-traffic:dst_port = 502"
    with pytest.raises(StixValidationError):
        validate_bundle(json.dumps(data))


def test_validate_rejects_a_sighting_without_required_fields():
    data = json.loads(build_alert(group(), "plc-7", MODEL, NOW).payload)
    sig = next(o for o in data["objects"] if o["type"] == "sighting")
    del sig["sighting_of_ref"]
    with pytest.raises(StixValidationError):
        validate_bundle(json.dumps(data))


def test_summary_line():
    s = summarize(validate_bundle(build_alert(group(), "plc-7", MODEL, NOW).payload))
    line = s.line()
    for part in (
        "DoS",
        "10.0.0.5 -> 10.0.0.9:502/tcp",
        "count=12",
        "confidence=93%",
        "device=plc-7",
        "first=2022-01-01T00:00:01.250Z",
    ):
        assert part in line
    assert s == summarize(json.loads(build_alert(group(), "plc-7", MODEL, NOW).payload))


def test_dataclass_replace_keeps_validity_for_odd_values():
    g = dataclasses.replace(group(), count=1, first_seen=0.0, last_seen=0.0, window_start=0)
    assert validate_bundle(build_alert(g, "x", MODEL, NOW).payload)


def test_stix2_still_rejects_bad_patterns_with_the_shared_cache():
    good = "[network-traffic:dst_port = 502]"
    for _ in range(2):  # the second time comes from the cache
        stix2.Indicator(pattern=good, pattern_type="stix", valid_from=NOW)
        with pytest.raises(stix2.exceptions.InvalidValueError, match="pattern"):
            stix2.Indicator(pattern=good[:-1], pattern_type="stix", valid_from=NOW)


def test_every_bundle_publishes_the_extension_definition():
    objs = objects(build_alert(group(), "plc-7", MODEL, NOW))
    [definition] = objs["extension-definition"]
    assert definition == extension_definition() and definition["id"] == EXTENSION_ID
    assert definition["extension_types"] == ["property-extension"]
    assert definition["created_by_ref"] == PUBLISHER_ID
    assert publisher_identity() in objs["identity"]
    for kind in ("indicator", "sighting"):
        ext = objs[kind][0]["extensions"][EXTENSION_ID]
        assert ext["extension_type"] == "property-extension"
    # what a receiver needs to read the details is in the definition's schema text
    for name in details(objs["indicator"][0]):
        assert f"{name} (" in definition["schema"]


def test_versions_of_an_alert_keep_created_and_advance_modified():
    """A burst that grew is a newer version of the same STIX objects."""
    v1 = objects(build_alert(group(), "plc-7", MODEL, NOW))
    later = datetime(2022, 1, 1, 0, 9, tzinfo=UTC)
    v2 = objects(build_alert(group(count=40, last_seen=1_640_995_500.0), "plc-7", MODEL, later))
    for kind in ("indicator", "sighting", "observed-data"):
        a, b = v1[kind][0], v2[kind][0]
        assert a["id"] == b["id"] and a["created"] == b["created"] == "2022-01-01T00:00:00.000Z"
        assert a["modified"] < b["modified"]


def test_summary_reads_bundles_of_earlier_fedids_versions():
    """Before the extension, details were x_fedids_* properties; those still print."""
    data = json.loads(build_alert(group(), "plc-7", MODEL, NOW).payload)
    for o in data["objects"]:
        ext = o.pop("extensions", {}).get(EXTENSION_ID, {})
        o.update({f"x_fedids_{k}": v for k, v in ext.items() if k != "extension_type"})
    old = summarize(validate_bundle(json.dumps(data)))
    assert old == summarize(json.loads(build_alert(group(), "plc-7", MODEL, NOW).payload))
