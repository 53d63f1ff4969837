"""SYNTHETIC flow records in the WUSTL-IIoT-2021 schema, for offline demos and tests.

Everything this module produces is made up. The real dataset cannot be downloaded on the
machines fedids is developed on, so :func:`generate` stands in for it: same 49 columns,
same class proportions, plausible values, but no real traffic behind any row. Results
obtained on it must be reported as synthetic.

How the records are made (all vectorized numpy, deterministic for a given seed):

* Each class is a mixture of *profiles* (e.g. normal = Modbus polling, web HMI, DNS/NTP,
  historian transfers, engineering sessions, pings, short TCP checks; DoS = SYN flood and
  Modbus request flood). A profile draws a few latent quantities per flow (packets each
  way, bytes per packet, duration, timing regularity, TTL, round-trip time, loss) from
  log-normal or discrete distributions; the 41 feature columns are then *derived* from
  them the way a flow meter would (bytes = packets x size, load = bits / duration,
  inter-packet time = duration / packets, ...), so columns are consistent with each other.
* Normal traffic is deliberately diverse, so every attack overlaps some benign profile on
  every single column: no one-column threshold separates attacks from normal traffic,
  but the combination of columns mostly does.
* A share of every attack class is camouflaged (:data:`CAMOUFLAGE`): drawn from a benign
  profile, so it cannot be told apart from normal traffic by any detector. Together with
  the rare classes (CommInj, Backdoor: 0.02 % of records) this keeps the task from being
  trivially separable: a centralized random forest reaches about 0.9 macro-F1, not 0.999.
* Attacks come from a few attacker addresses, aim at a few PLCs (Modbus/TCP port 502 and
  others) and happen in bursts (time windows), so alerts can group them by source,
  destination and time.
* Addresses are taken from the RFC 5737 documentation ranges (192.0.2.0/24 for the plant
  network, 198.51.100.0/24 for office/IT services, 203.0.113.0/24 for attackers). They can
  never belong to a real host, and :func:`looks_synthetic` uses them to recognize a
  synthetic file on disk.
* Class counts follow the published proportions exactly (largest-remainder rounding) and
  every class gets at least one record when there are at least as many rows as classes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import replace

import numpy as np
import polars as pl

from fedids.data.schema import WUSTL_CLASS_COUNTS, WUSTL_CLASSES, WUSTL_COLUMNS
from fedids.data.synth_profiles import (
    _ADDRESS_INDEX,
    _ADDRESSES,
    _BURSTS,
    CAMOUFLAGE,
    CAMOUFLAGE_FROM,
    ICMP,
    TCP,
    LogN,
    _Profile,
    _profiles,
)

#: Capture start of the synthetic "recording" (2021-02-15 12:00 UTC) and its length.
CAPTURE_START = 1_613_390_400.0
CAPTURE_SECONDS = 48 * 3600.0

#: The RFC 5737 documentation networks synthetic addresses are drawn from.
SYNTHETIC_NETWORKS = tuple(
    ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")
)


__all__ = ["CAMOUFLAGE", "CAMOUFLAGE_FROM", "class_counts", "generate", "looks_synthetic"]


# --- class counts ----------------------------------------------------------------------


def class_counts(rows: int, proportions: Mapping[str, float] | None = None) -> dict[str, int]:
    """Records per class for ``rows`` records, in exact expected proportions.

    Largest-remainder rounding (the counts sum to ``rows``); then, when ``rows`` is at least
    the number of classes, any class left at zero takes one record from the largest class,
    so that every class is present in every generated table that can hold them all.
    """
    if rows < 0:
        raise ValueError(f"rows must be >= 0, got {rows}")
    weights = dict(proportions or WUSTL_CLASS_COUNTS)
    names = list(weights)
    p = np.array([weights[n] for n in names], dtype=np.float64)
    exact = rows * p / p.sum()
    counts = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: rows - int(counts.sum())]] += 1
    if rows >= len(names):
        for i in np.flatnonzero(counts == 0):
            counts[int(np.argmax(counts))] -= 1
            counts[i] = 1
    return {n: int(c) for n, c in zip(names, counts, strict=True)}


# --- drawing ---------------------------------------------------------------------------


def _lognormal(rng: np.random.Generator, params: LogN, n: int) -> np.ndarray:
    median, sigma = params
    return median * np.exp(sigma * rng.standard_normal(n))


def _discrete(rng: np.random.Generator, weights: Mapping, n: int) -> np.ndarray:
    values = np.asarray(list(weights.keys()))
    p = np.asarray(list(weights.values()), dtype=np.float64)
    return values[rng.choice(len(values), size=n, p=p / p.sum())]


def _ephemeral_ports(rng: np.random.Generator, ttl: np.ndarray) -> np.ndarray:
    """Source ports as the source's OS picks them (Windows vs Linux ranges)."""
    windows_os = rng.integers(49152, 65536, size=len(ttl))
    linux = rng.integers(32768, 61000, size=len(ttl))
    return np.where(ttl >= 128, windows_os, linux)


def _start_times(
    rng: np.random.Generator, windows: np.ndarray | None, length: float, n: int
) -> np.ndarray:
    """Uniform over the capture, or inside the given burst windows (start offsets)."""
    if windows is None:
        return CAPTURE_START + rng.uniform(0.0, CAPTURE_SECONDS, n)
    which = rng.integers(0, len(windows), n)
    return CAPTURE_START + windows[which] + rng.uniform(0.0, length, n)


def _draw(
    rng: np.random.Generator,
    prof: _Profile,
    n: int,
    windows: np.ndarray | None = None,
    window_seconds: float = 0.0,
) -> dict[str, np.ndarray]:
    """Latent quantities for ``n`` flows of one profile (in ``windows`` if given)."""
    src_addr = _discrete(rng, {_ADDRESS_INDEX[a]: w for a, w in prof.src.items()}, n)
    dst_addr = _discrete(rng, {_ADDRESS_INDEX[a]: w for a, w in prof.dst.items()}, n)
    proto = _discrete(rng, prof.proto, n).astype(np.int64)
    dport = _discrete(rng, prof.dport, n).astype(np.int64)
    if prof.dport_random > 0:
        rand = rng.random(n) < prof.dport_random
        dport = np.where(rand, rng.integers(1, 65536, n), dport)
    ttl_base = _discrete(rng, prof.ttl, n).astype(np.int64)
    spkts = np.maximum(1, np.rint(_lognormal(rng, prof.spkts, n))).astype(np.int64)
    answered = rng.random(n) < prof.reply
    dpkts = np.where(
        answered, np.maximum(1, np.rint(spkts * _lognormal(rng, prof.ratio, n))), 0
    ).astype(np.int64)
    return {
        "src": src_addr,
        "dst": dst_addr,
        "start": _start_times(rng, windows, window_seconds, n),
        "proto": proto,
        "sport": _ephemeral_ports(rng, ttl_base),
        "dport": dport,
        "spkts": spkts,
        "dpkts": dpkts,
        "sbpp": np.clip(_lognormal(rng, prof.sbpp, n), 42, 1514),
        "dbpp": np.clip(_lognormal(rng, prof.dbpp, n), 42, 1514),
        "dur": _lognormal(rng, prof.dur, n),
        "cv_s": _lognormal(rng, prof.cv, n),
        "cv_d": _lognormal(rng, prof.cv, n),
        "sttl": ttl_base - _discrete(rng, prof.hops, n).astype(np.int64),
        "dttl": _discrete(rng, {64: 0.6, 255: 0.25, 128: 0.15}, n).astype(np.int64),
        "rtt": _lognormal(rng, prof.rtt, n),
        "loss": np.clip(_lognormal(rng, prof.loss, n), 0.0, 0.9),
        "idle": _lognormal(rng, prof.idle, n),
        "dsb": _discrete(rng, prof.dsb, n).astype(np.int64),
    }


#: Latent quantities blended geometrically (continuous) or picked from one side (discrete).
_CONTINUOUS = ("sbpp", "dbpp", "dur", "cv_s", "cv_d", "rtt", "loss", "idle")
_DISCRETE = ("proto", "dport", "sttl", "dttl", "dsb")


def _draw_blended(
    rng: np.random.Generator,
    prof: _Profile,
    n: int,
    windows: np.ndarray | None = None,
    window_seconds: float = 0.0,
) -> dict[str, np.ndarray]:
    """A camouflaged profile's flows: its own values blended with ``prof.blend_with``'s."""
    own = _draw(rng, replace(prof, blend_with=None), n, windows, window_seconds)
    assert prof.blend_with is not None
    other = _draw(rng, prof.blend_with, n, windows, window_seconds)
    t = rng.uniform(prof.blend_from, 1.0, n)
    for key in _CONTINUOUS:
        own[key] = np.exp(t * np.log(own[key]) + (1 - t) * np.log(other[key]))
    for key in ("spkts", "dpkts"):
        mixed = np.exp(t * np.log1p(own[key]) + (1 - t) * np.log1p(other[key])) - 1
        own[key] = np.rint(mixed).astype(np.int64)
    own["spkts"] = np.maximum(own["spkts"], 1)
    pick = rng.random(n) >= t
    for key in _DISCRETE:
        own[key] = np.where(pick, other[key], own[key])
    return own


def _assemble(lat: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Derive the flow-meter columns from latent quantities, consistently."""
    n = len(lat["spkts"])
    proto, spkts, dpkts = lat["proto"], lat["spkts"], lat["dpkts"]
    tcp, icmp = proto == TCP, proto == ICMP
    totpkts = spkts + dpkts
    dur = np.where(totpkts > 1, lat["dur"], 0.0)
    src_bytes = np.rint(spkts * lat["sbpp"]).astype(np.int64)
    dst_bytes = np.rint(dpkts * lat["dbpp"]).astype(np.int64)
    header = np.where(tcp, 60, 42)
    s_app = np.maximum(0, src_bytes - spkts * header)
    d_app = np.maximum(0, dst_bytes - dpkts * header)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_s = np.where(dur > 0, 1.0 / dur, 0.0)
    s_int = np.where(spkts > 1, dur * 1e3 / np.maximum(spkts - 1, 1), 0.0)
    d_int = np.where(dpkts > 1, dur * 1e3 / np.maximum(dpkts - 1, 1), 0.0)
    s_jit = np.where(spkts > 2, s_int * lat["cv_s"], 0.0)
    d_jit = np.where(dpkts > 2, d_int * lat["cv_d"], 0.0)
    src_loss = rng.binomial(spkts, lat["loss"])
    dst_loss = rng.binomial(dpkts, lat["loss"] / 2)
    loss = src_loss + dst_loss
    handshake = tcp & (dpkts > 0)
    rtt = np.where(handshake, lat["rtt"], 0.0)
    records = 1 + rng.poisson(np.minimum(dur / 10.0, 20.0))
    run_time = dur * rng.uniform(0.85, 1.0, n)
    mean = run_time / records
    multi = records > 1
    min_ = np.where(multi, mean * rng.uniform(0.2, 1.0, n), mean)
    max_ = np.where(multi, np.minimum(run_time, mean * (1 + rng.uniform(0, 1, n))), mean)
    ports_icmp = np.where(icmp, 8, lat["sport"])  # ICMP: "ports" are echo type / code
    return {
        "StartTime": lat["start"],
        "LastTime": lat["start"] + dur,
        "Mean": mean,
        "Sport": ports_icmp,
        "Dport": np.where(icmp, 0, lat["dport"]),
        "SrcPkts": spkts,
        "DstPkts": dpkts,
        "TotPkts": totpkts,
        "DstBytes": dst_bytes,
        "SrcBytes": src_bytes,
        "TotBytes": src_bytes + dst_bytes,
        "SrcLoad": src_bytes * 8.0 * per_s,
        "DstLoad": dst_bytes * 8.0 * per_s,
        "Load": (src_bytes + dst_bytes) * 8.0 * per_s,
        "SrcRate": spkts * per_s,
        "DstRate": dpkts * per_s,
        "Rate": totpkts * per_s,
        "SrcLoss": src_loss,
        "DstLoss": dst_loss,
        "Loss": loss,
        "pLoss": 100.0 * loss / totpkts,
        "SrcJitter": s_jit,
        "DstJitter": d_jit,
        "SIntPkt": s_int,
        "DIntPkt": d_int,
        "Proto": proto,
        "Dur": dur,
        "TcpRtt": rtt,
        "IdleTime": lat["idle"],
        "Sum": run_time,
        "Min": min_,
        "Max": max_,
        "sDSb": lat["dsb"],
        "sTtl": lat["sttl"],
        "dTtl": np.where(dpkts > 0, lat["dttl"], 0),
        "sIpId": rng.integers(0, 65536, n),
        "dIpId": np.where(dpkts > 0, rng.integers(0, 65536, n), 0),
        "SAppBytes": s_app,
        "DAppBytes": d_app,
        "TotAppByte": s_app + d_app,
        "SynAck": rtt * rng.uniform(0.3, 0.7, n),
        "RunTime": run_time,
        "sTos": lat["dsb"] * 4,
        "SrcJitAct": s_jit * rng.uniform(0.6, 1.0, n),
        "DstJitAct": d_jit * rng.uniform(0.6, 1.0, n),
    }


def generate(rows: int, seed: int) -> pl.DataFrame:
    """``rows`` SYNTHETIC flow records in the 49-column WUSTL-IIoT-2021 schema.

    Deterministic: the same ``(rows, seed)`` always gives the same table. Rows are in
    capture-time order, like a flow meter's export.
    """
    if isinstance(rows, bool) or int(rows) != rows or rows < 1:
        raise ValueError(f"rows must be a positive integer, got {rows!r}")
    rows = int(rows)
    rng = np.random.default_rng(seed)
    parts: list[dict[str, np.ndarray]] = []
    labels: list[np.ndarray] = []
    for cls, count in class_counts(rows).items():
        if count == 0:
            continue
        profiles = _profiles(cls)
        windows, length = None, 0.0
        if cls in _BURSTS:
            n_windows, length = _BURSTS[cls]
            windows = rng.uniform(0.0, CAPTURE_SECONDS - length, n_windows)
        w = np.array([p.weight for p in profiles], dtype=np.float64)
        per_profile = rng.multinomial(count, w / w.sum())
        for prof, k in zip(profiles, per_profile, strict=True):
            if k == 0:
                continue
            draw = _draw_blended if prof.blend_with is not None else _draw
            parts.append(draw(rng, prof, int(k), windows, length))
            labels.append(np.full(int(k), WUSTL_CLASSES.index(cls), dtype=np.int64))
    lat = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    label = np.concatenate(labels)
    cols = _assemble(lat, rng)
    order = np.argsort(lat["start"], kind="stable")
    addresses = pl.Series(_ADDRESSES, dtype=pl.String)
    data: dict[str, pl.Series] = {}
    for name in WUSTL_COLUMNS:
        if name in ("SrcAddr", "DstAddr"):
            data[name] = addresses.gather(lat["src" if name == "SrcAddr" else "dst"][order])
        elif name == "Traffic":
            data[name] = pl.Series(WUSTL_CLASSES, dtype=pl.String).gather(label[order])
        elif name == "Target":
            data[name] = pl.Series((label[order] > 0).astype(np.int64))
        else:
            values = cols[name][order]
            if values.dtype.kind == "f":
                values = np.round(values, 6)  # microsecond / micro-unit resolution
            data[name] = pl.Series(values)
    return pl.DataFrame({name: data[name].alias(name) for name in WUSTL_COLUMNS})


def looks_synthetic(addresses: Iterable[str]) -> bool:
    """True when every address lies in the RFC 5737 ranges this generator uses.

    Real captures never contain these documentation-only addresses, so a file whose
    addresses all do was (for practical purposes) written by :func:`generate`.
    """
    seen = False
    for a in addresses:
        try:
            ip = ipaddress.ip_address(str(a).strip())
        except ValueError:
            return False
        if not any(ip in net for net in SYNTHETIC_NETWORKS):
            return False
        seen = True
    return seen
