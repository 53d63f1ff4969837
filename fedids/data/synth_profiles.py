"""The profiles SYNTHETIC flows are drawn from (see :mod:`fedids.data.synth`).

Each class is a mixture of profiles: distributions of a flow's latent quantities (packets
each way, bytes per packet, duration, timing regularity, TTL, round-trip time, loss) and
of its endpoints. Benign profiles are diverse on purpose; attack profiles sit between them;
a share of every attack class is camouflaged as a benign profile (:data:`CAMOUFLAGE`).
Addresses come from the RFC 5737 documentation ranges only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

TCP, UDP, ICMP = 6, 17, 1

# --- address pools ---------------------------------------------------------------------

_POOLS: dict[str, list[str]] = {
    "plc": [f"192.0.2.{i}" for i in range(10, 18)],
    "hmi": [f"192.0.2.{i}" for i in range(50, 55)],
    "eng": ["192.0.2.60", "192.0.2.61"],
    "historian": ["192.0.2.70"],
    "webhmi": ["192.0.2.80"],
    "monitor": ["192.0.2.90"],
    "office": [f"198.51.100.{i}" for i in range(20, 40)],
    "dns": ["198.51.100.53"],
    "ntp": ["198.51.100.123"],
    "attacker": ["203.0.113.66", "203.0.113.77", "203.0.113.99"],
}
_POOLS["ot"] = _POOLS["plc"] + _POOLS["hmi"] + _POOLS["eng"] + _POOLS["historian"]
_POOLS["ot"] += _POOLS["webhmi"]
_POOLS["clients"] = _POOLS["hmi"] + _POOLS["eng"] + _POOLS["office"]

_ADDRESSES: list[str] = sorted({a for pool in _POOLS.values() for a in pool})
_ADDRESS_INDEX = {a: i for i, a in enumerate(_ADDRESSES)}

#: Weighted pools for attacks: a few attackers reused, a few PLCs targeted most.
_ATTACKERS = {"203.0.113.66": 0.6, "203.0.113.77": 0.3, "203.0.113.99": 0.1}
_TARGET_PLCS = {"192.0.2.10": 0.55, "192.0.2.11": 0.3, "192.0.2.12": 0.15}

#: Ports a scan tries first (the rest of a scan is spread over all ports).
_SCAN_PORTS = [21, 22, 23, 80, 102, 135, 443, 445, 502, 1911, 2404, 3389, 8080, 20000, 44818]


def _uniform(pool: str) -> dict[str, float]:
    return {a: 1.0 for a in _POOLS[pool]}


LogN = tuple[float, float]  # (median, sigma of the natural log)


@dataclass(frozen=True)
class _Profile:
    """One kind of flow: distributions of its latent quantities.

    Log-normal quantities are given as ``(median, sigma)``; discrete ones as
    ``{value: weight}``.
    """

    name: str
    weight: float  # share within its class
    src: Mapping[str, float]
    dst: Mapping[str, float]
    proto: Mapping[int, float]
    dport: Mapping[int, float]
    spkts: LogN
    reply: float  # probability that the destination answers at all
    ratio: LogN  # destination packets / source packets, when it answers
    sbpp: LogN  # source bytes per packet
    dbpp: LogN  # destination bytes per packet
    dur: LogN  # seconds, for flows of more than one packet
    cv: LogN  # jitter / mean inter-packet time (timing irregularity)
    ttl: Mapping[int, float]  # initial TTL of the source's OS
    hops: Mapping[int, float]  # routers between source and capture point
    rtt: LogN  # TCP round-trip time, seconds
    loss: LogN  # per-packet loss probability
    idle: LogN  # seconds
    dport_random: float = 0.0  # share of flows to a uniformly random port (scans)
    dsb: Mapping[int, float] = field(default_factory=lambda: {0: 1.0})
    #: camouflage: each flow is blended with this (attack) profile, keeping a share
    #: t ~ U(blend_from, 1) of this profile's values (t = 1: indistinguishable from it)
    blend_with: _Profile | None = None
    blend_from: float = 1.0


_LINUX_OR_WIN = {64: 0.45, 128: 0.55}

# Benign profiles: diverse on purpose so that attacks overlap some of them on every column.
_NORMAL = [
    _Profile("modbus_poll", 0.50, _uniform("hmi"), _uniform("plc"), {TCP: 1}, {502: 1},
             spkts=(12, 0.6), reply=0.995, ratio=(1.0, 0.1), sbpp=(66, 0.05),
             dbpp=(76, 0.12), dur=(3.0, 0.7), cv=(0.12, 0.5), ttl=_LINUX_OR_WIN,
             hops={0: 0.8, 1: 0.2}, rtt=(6e-4, 0.4), loss=(5e-4, 0.8), idle=(0.6, 0.9),
             dsb={0: 0.9, 46: 0.05, 8: 0.05}),
    _Profile("web_hmi", 0.13, _uniform("office"), _uniform("webhmi"), {TCP: 1},
             {80: 0.4, 443: 0.5, 8080: 0.1}, spkts=(15, 0.7), reply=0.99, ratio=(1.3, 0.25),
             sbpp=(130, 0.35), dbpp=(700, 0.4), dur=(1.5, 0.8), cv=(0.5, 0.5),
             ttl={64: 0.2, 128: 0.8}, hops={1: 1.0}, rtt=(2e-3, 0.5), loss=(2e-3, 0.8),
             idle=(2.0, 0.8)),
    _Profile("dns", 0.08, _uniform("clients"), _uniform("dns"), {UDP: 1}, {53: 1},
             spkts=(1.2, 0.4), reply=0.97, ratio=(1.0, 0.1), sbpp=(75, 0.15), dbpp=(120, 0.3),
             dur=(3e-3, 0.7), cv=(0.3, 0.5), ttl=_LINUX_OR_WIN, hops={0: 0.5, 1: 0.5},
             rtt=(1e-3, 0.5), loss=(1e-3, 0.8), idle=(5.0, 0.7)),
    _Profile("ntp", 0.03, _uniform("ot"), _uniform("ntp"), {UDP: 1}, {123: 1},
             spkts=(1.1, 0.3), reply=0.98, ratio=(1.0, 0.05), sbpp=(90, 0.02), dbpp=(90, 0.02),
             dur=(2e-3, 0.6), cv=(0.3, 0.5), ttl=_LINUX_OR_WIN, hops={1: 1.0},
             rtt=(1e-3, 0.5), loss=(1e-3, 0.8), idle=(30.0, 0.6)),
    _Profile("historian", 0.10, {**_uniform("hmi"), **_uniform("plc")}, _uniform("historian"),
             {TCP: 1}, {4840: 0.6, 1433: 0.4}, spkts=(200, 0.8), reply=1.0, ratio=(0.6, 0.3),
             sbpp=(900, 0.3), dbpp=(80, 0.25), dur=(8.0, 0.8), cv=(0.4, 0.5),
             ttl=_LINUX_OR_WIN, hops={0: 1.0}, rtt=(8e-4, 0.4), loss=(1e-3, 0.8),
             idle=(3.0, 0.7)),
    _Profile("report_query", 0.03, _uniform("office"), _uniform("historian"), {TCP: 1},
             {1433: 0.6, 443: 0.4}, spkts=(30, 0.6), reply=1.0, ratio=(2.0, 0.3),
             sbpp=(90, 0.3), dbpp=(1200, 0.15), dur=(2.0, 0.8), cv=(0.5, 0.5),
             ttl={64: 0.2, 128: 0.8}, hops={1: 1.0}, rtt=(2e-3, 0.5), loss=(2e-3, 0.8),
             idle=(1.5, 0.8)),
    _Profile("engineering", 0.08, _uniform("eng"), _uniform("plc"), {TCP: 1},
             {102: 0.3, 44818: 0.3, 22: 0.2, 20000: 0.2}, spkts=(25, 0.8), reply=0.99,
             ratio=(1.0, 0.3), sbpp=(110, 0.4), dbpp=(140, 0.4), dur=(5.0, 0.8),
             cv=(0.4, 0.5), ttl={64: 0.3, 128: 0.7}, hops={0: 1.0}, rtt=(7e-4, 0.4),
             loss=(1e-3, 0.8), idle=(2.0, 0.7)),
    _Profile("ping", 0.04, _uniform("monitor"), _uniform("ot"), {ICMP: 1}, {0: 1},
             spkts=(3, 0.4), reply=0.97, ratio=(1.0, 0.05), sbpp=(98, 0.02), dbpp=(98, 0.02),
             dur=(2.0, 0.3), cv=(0.02, 0.5), ttl={64: 1.0}, hops={0: 1.0}, rtt=(5e-4, 0.4),
             loss=(1e-3, 0.8), idle=(10.0, 0.6)),
    _Profile("tcp_check", 0.04, {**_uniform("monitor"), **_uniform("hmi")}, _uniform("ot"),
             {TCP: 1}, {502: 0.5, 80: 0.2, 44818: 0.2, 102: 0.1}, spkts=(4, 0.2),
             reply=0.98, ratio=(0.8, 0.15), sbpp=(70, 0.05), dbpp=(72, 0.06), dur=(5e-3, 0.6),
             cv=(0.2, 0.5), ttl=_LINUX_OR_WIN, hops={0: 1.0}, rtt=(6e-4, 0.4),
             loss=(1e-3, 0.8), idle=(0.1, 0.8)),
]  # fmt: skip

# Attack profiles: each sits between benign profiles, near some benign profile on every
# single column but far from all of them on several columns at once.
_ATTACK_TTL = {64: 0.85, 128: 0.15}
_ROUTED = {1: 0.6, 2: 0.4}

_DOS = [
    _Profile("syn_flood", 0.6, _ATTACKERS, _TARGET_PLCS, {TCP: 1}, {502: 0.8, 80: 0.2},
             spkts=(40, 0.8), reply=0.9, ratio=(0.3, 0.5), sbpp=(60, 0.03), dbpp=(60, 0.04),
             dur=(0.3, 0.8), cv=(0.05, 0.5), ttl=_ATTACK_TTL, hops=_ROUTED, rtt=(4e-3, 0.6),
             loss=(0.08, 0.7), idle=(0.1, 1.0)),
    _Profile("modbus_flood", 0.4, _ATTACKERS, _TARGET_PLCS, {TCP: 1}, {502: 1},
             spkts=(150, 0.8), reply=0.98, ratio=(0.7, 0.3), sbpp=(66, 0.05), dbpp=(72, 0.12),
             dur=(1.0, 0.8), cv=(0.05, 0.5), ttl=_ATTACK_TTL, hops=_ROUTED, rtt=(3e-3, 0.6),
             loss=(0.03, 0.7), idle=(0.1, 1.0)),
]  # fmt: skip

_RECONN = [
    _Profile("port_scan", 0.7, _ATTACKERS, _uniform("ot"), {TCP: 1},
             {p: 1.0 for p in _SCAN_PORTS}, dport_random=0.6, spkts=(1.2, 0.3), reply=0.8,
             ratio=(1.0, 0.1), sbpp=(60, 0.02), dbpp=(60, 0.03), dur=(8e-4, 0.8),
             cv=(0.2, 0.5), ttl=_ATTACK_TTL, hops=_ROUTED, rtt=(1.5e-3, 0.5),
             loss=(1e-3, 0.8), idle=(0.05, 0.9)),
    _Profile("sweep", 0.3, _ATTACKERS, _uniform("ot"), {ICMP: 0.5, UDP: 0.5},
             {p: 1.0 for p in (161, 502, 1900, 2222, 20000, 47808)}, dport_random=0.5,
             spkts=(1.1, 0.2), reply=0.5, ratio=(1.0, 0.05), sbpp=(60, 0.03), dbpp=(70, 0.1),
             dur=(1e-3, 0.8), cv=(0.2, 0.5), ttl=_ATTACK_TTL, hops=_ROUTED,
             rtt=(1.5e-3, 0.5), loss=(1e-3, 0.8), idle=(0.05, 0.9)),
]  # fmt: skip

_COMMINJ = [
    _Profile("modbus_write", 1.0, _ATTACKERS, _TARGET_PLCS, {TCP: 1}, {502: 1},
             spkts=(8, 0.35), reply=1.0, ratio=(1.0, 0.08), sbpp=(100, 0.06), dbpp=(64, 0.03),
             dur=(0.25, 0.4), cv=(1.5, 0.25), ttl=_ATTACK_TTL, hops={1: 1.0}, rtt=(6e-4, 0.4),
             loss=(5e-4, 0.8), idle=(0.3, 0.5)),
]  # fmt: skip

_BACKDOOR = [
    _Profile("shell", 1.0, _ATTACKERS, {**_TARGET_PLCS, "192.0.2.50": 0.3}, {TCP: 1},
             {4444: 0.5, 8443: 0.3, 31337: 0.2}, spkts=(60, 0.35), reply=1.0,
             ratio=(1.5, 0.12), sbpp=(72, 0.08), dbpp=(700, 0.2), dur=(25.0, 0.5),
             cv=(2.0, 0.3), ttl=_ATTACK_TTL, hops=_ROUTED, rtt=(3e-3, 0.4),
             loss=(1e-3, 0.8), idle=(30.0, 0.4)),
]  # fmt: skip

#: Attack campaigns happen in bursts: (number of time windows, window length in seconds).
#: All profiles of a class share its windows (a DoS campaign runs both flood tools).
_BURSTS: dict[str, tuple[int, float]] = {
    "DoS": (4, 1800.0),
    "Reconn": (3, 1200.0),
    "CommInj": (3, 600.0),
    "Backdoor": (2, 1800.0),
}

#: Share of each attack class that is *camouflaged*: flows an attacker shapes like a benign
#: profile (slow DoS like health checks, scans like TCP checks, writes inside normal Modbus
#: polling, a backdoor session like an engineering session). Each such flow blends the
#: class's main profile with the benign one, keeping t ~ U(CAMOUFLAGE_FROM, 1) of the benign
#: values (in log space): from half-way to indistinguishable. This caps every detector's
#: recall on that class, blurs the boundary it must learn, and keeps the data from being
#: trivially separable
#: (calibrated so that a centralized random forest scores about 0.9 macro-F1 on the default
#: 300k rows, see docs/encoding.md).
CAMOUFLAGE_FROM = 0.5
CAMOUFLAGE: dict[str, tuple[float, str]] = {
    "DoS": (0.10, "tcp_check"),
    "Reconn": (0.20, "tcp_check"),
    "CommInj": (0.20, "modbus_poll"),
    "Backdoor": (0.20, "engineering"),
}


def _camouflaged(cls: str, profiles: list[_Profile]) -> list[_Profile]:
    share, benign_name = CAMOUFLAGE[cls]
    if share <= 0:
        return profiles
    benign = next(p for p in _NORMAL if p.name == benign_name)
    total = sum(p.weight for p in profiles)
    disguise = replace(
        benign,
        name=f"{cls.lower()}_as_{benign_name}",
        weight=total * share / (1.0 - share),
        src=_ATTACKERS,
        dst=_TARGET_PLCS,
        blend_with=profiles[0],
        blend_from=CAMOUFLAGE_FROM,
    )
    return [*profiles, disguise]


_ATTACK_PROFILES: dict[str, list[_Profile]] = {
    "DoS": _DOS,
    "Reconn": _RECONN,
    "CommInj": _COMMINJ,
    "Backdoor": _BACKDOOR,
}


def _profiles(cls: str) -> list[_Profile]:
    """A class's profiles, the camouflaged one included (read from :data:`CAMOUFLAGE`)."""
    if cls == "normal":
        return _NORMAL
    return _camouflaged(cls, _ATTACK_PROFILES[cls])
