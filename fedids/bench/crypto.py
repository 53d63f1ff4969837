"""Crypto-only figures (protocol v2, no Flower): packed Paillier end to end, per-value
python-paillier, obfuscator methods, decryption against its powmod floor, FedAvg error.

Packed is timed "everything counted": each device's obfuscators are computed on the
critical path (reported apart as ``obfuscator_seconds``, since a device precomputes them
while it trains), then encryption, the server's parse and sum, one device's decryption.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

import gmpy2
import numpy as np

from fedids.bench.common import exact_fedavg, max_abs_error, now, upload_bytes
from fedids.crypto import obfuscators, vector
from fedids.crypto.codec import Binding, CodecParams
from fedids.crypto.keys import PrivateKey, PublicKey
from fedids.crypto.update import AggregateDecryptor, UpdateEncryptor
from strategies.homomorphic import parse_update, sum_updates

BINDING = Binding(run_id=1, round=1, base_version=0, kind=Binding.MODEL)


def started_pool(workers: int) -> vector.WorkerPool | None:
    """A private pool with its workers started outside any timing (a device keeps them)."""
    if workers < 2:
        return None
    pool = vector.WorkerPool(workers)
    pool.submit(abs, 0).result()
    return pool


def time_packed(
    pub: PublicKey,
    priv: PrivateKey,
    params: CodecParams,
    updates: Sequence[Sequence[np.ndarray]],
    num_examples: Sequence[int],
    workers: int,
    crt: bool = True,
    method: str = "auto",
    pool: vector.WorkerPool | None = None,
) -> dict[str, Any]:
    """Every device encrypts (share n_k/N), the server parses and sums, one device decrypts.

    ``crt``: the obfuscators use the private key's factors (what a device can do); the
    base of the fixed-base method is built before the timing (once per process and key).
    """
    own_pool = pool is None
    pool = started_pool(workers) if own_pool else pool
    try:
        factors = (int(priv.p), int(priv.q)) if crt else None
        probe = UpdateEncryptor(
            pub, params, 1, pool=pool, private_key=priv if crt else None, obfuscators=method
        )
        method = probe.obfuscators
        if method == "fixed-base":
            obfuscators.short_exponent_base(pub.n, factors)  # one-time, per process
        n_values = sum(int(np.size(a)) for a in updates[0])
        n_ct = params.n_model_ciphertexts(n_values)
        total = float(sum(num_examples))
        payloads, obf_s, enc_s = [], 0.0, 0.0
        for w, n in zip(updates, num_examples, strict=True):
            enc = UpdateEncryptor(
                pub,
                params,
                workers,
                pool=pool,
                private_key=priv if crt else None,
                obfuscators=method,
            )
            tag = None if crt else AggregateDecryptor(priv, params, 1).binding_tag(BINDING)
            t0 = now()
            enc.start_precompute(n_ct)
            enc.wait_precompute()
            t1 = now()
            payloads.append(enc.encrypt_model(w, share=n / total, binding=BINDING, tag=tag))
            t2 = now()
            obf_s, enc_s = obf_s + (t1 - t0), enc_s + (t2 - t0)
        t0 = now()
        parsed = [parse_update(p, params=params, n=pub.n, expect=BINDING) for p in payloads]
        aggregate = sum_updates(parsed, [1] * len(parsed), binding=BINDING)
        server_s = now() - t0
        dec = AggregateDecryptor(priv, params, workers, pool=pool)
        shapes = [np.shape(a) for a in updates[0]]
        t0 = now()
        out, info = dec.decrypt_model(aggregate, shapes, expect=BINDING)
        decrypt_s = now() - t0
    finally:
        if own_pool and pool is not None:
            pool.close()
    k = len(updates)
    err = max_abs_error(out, exact_fedavg(updates, num_examples, params.clip))
    return {
        "workers": workers,
        "crt_obfuscators": crt,
        "obfuscators": method,
        "n_values": n_values,
        "n_ciphertexts": n_ct,
        "encrypt_seconds": enc_s,  # all devices, obfuscators included
        "encrypt_seconds_per_client": enc_s / k,
        "obfuscator_seconds_per_client": obf_s / k,
        "aggregate_seconds": server_s,
        "decrypt_seconds": decrypt_s,
        "client_seconds": enc_s / k + decrypt_s,
        "total_seconds": enc_s + server_s + decrypt_s,
        "critical_path_with_precompute_seconds": (enc_s - obf_s) + server_s + decrypt_s,
        "upload_bytes_per_client": upload_bytes(payloads[0]),
        "download_bytes_per_client": upload_bytes(aggregate),
        "max_abs_error": err,
        "error_bound": info.error_bound,
        "error_over_step": err / params.step,
    }


def time_naive(
    pub: PublicKey,
    priv: PrivateKey,
    updates: Sequence[Sequence[np.ndarray]],
    num_examples: Sequence[int],
    sample: int,
    seed: int = 0,
    chunks: int = 4,
) -> dict[str, Any]:
    """python-paillier, one EncryptedNumber per parameter, timed on ``sample`` values.

    The sample is timed in ``chunks`` pieces and each phase's per-value cost is the best
    piece's (background load only adds time), then extrapolated to the whole model.
    """
    flat = [np.concatenate([np.asarray(a, np.float64).ravel() for a in u]) for u in updates]
    n_values = flat[0].size
    idx = np.random.default_rng(seed).choice(n_values, size=min(sample, n_values), replace=False)
    total = float(sum(num_examples))
    per_value: dict[str, list[float]] = {"encrypt": [], "aggregate": [], "decrypt": []}
    values: list[float] = []
    for part in np.array_split(idx, min(chunks, len(idx))):
        t0 = now()
        encrypted = [[pub.encrypt(float(v)) for v in f[part]] for f in flat]
        per_value["encrypt"].append((now() - t0) / len(part))
        t0 = now()
        summed = []
        for j in range(len(part)):
            acc = encrypted[0][j] * (num_examples[0] / total)
            for k in range(1, len(encrypted)):
                acc = acc + encrypted[k][j] * (num_examples[k] / total)
            summed.append(acc)
        per_value["aggregate"].append((now() - t0) / len(part))
        t0 = now()
        values += [priv.decrypt(c) for c in summed]
        per_value["decrypt"].append((now() - t0) / len(part))
    best = {phase: min(times) for phase, times in per_value.items()}
    exact = sum(f[idx] * (n / total) for f, n in zip(flat, num_examples, strict=True))
    width = 2 * ((pub.n.bit_length() + 7) // 8)
    return {
        "sample_values": int(len(idx)),
        "n_values": n_values,
        "encrypt_seconds": best["encrypt"] * n_values,
        "aggregate_seconds": best["aggregate"] * n_values,
        "decrypt_seconds": best["decrypt"] * n_values,
        "total_seconds": sum(best.values()) * n_values,
        "encrypt_ms_per_value": 1000 * best["encrypt"] / len(flat),
        "decrypt_ms_per_value": 1000 * best["decrypt"],
        "upload_bytes_per_client": n_values * width,
        "max_abs_error": float(np.max(np.abs(np.array(values) - exact))),
    }


def _best_ms(fn, reps: int, rounds: int) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(rounds):
        t0 = now()
        fn(reps)
        best = min(best, (now() - t0) / reps)
    return 1000 * best


def obfuscator_costs(pub: PublicKey, priv: PrivateKey, rounds: int = 3) -> dict[str, Any]:
    """Milliseconds per obfuscator, one thread, interleaved, best of ``rounds``; and the
    one-time cost of each fixed-base table (per process and key)."""
    n, factors = pub.n, (int(priv.p), int(priv.q))
    t0 = now()
    obfuscators.ShortExponentBase(n, factors)
    build_crt = now() - t0
    t0 = now()
    obfuscators.ShortExponentBase(n, None)
    build_public = now() - t0
    obfuscators.short_exponent_base(n, factors)
    obfuscators.short_exponent_base(n, None)
    methods = {
        "classic_public_ms": (lambda k: obfuscators.random_obfuscators(n, k), 2),
        "classic_crt_ms": (lambda k: obfuscators.random_obfuscators_crt(*factors, k), 4),
        "fixed_base_public_ms": (lambda k: obfuscators.fixed_base_obfuscators(n, None, k), 10),
        "fixed_base_crt_ms": (lambda k: obfuscators.fixed_base_obfuscators(n, factors, k), 10),
    }
    best = {name: float("inf") for name in methods}
    for _ in range(rounds):  # interleaved: the methods share the machine's load
        for name, (fn, reps) in methods.items():
            best[name] = min(best[name], _best_ms(fn, reps, 1))
    return best | {
        "short_exponent_bits": obfuscators.short_exponent_bits(n.bit_length()),
        "window_bits": obfuscators.WINDOW,
        "table_build_crt_seconds": build_crt,
        "table_build_public_seconds": build_public,
        "fixed_base_crt_speedup_over_classic_crt": best["classic_crt_ms"]
        / best["fixed_base_crt_ms"],
        "fixed_base_public_speedup_over_classic_public": best["classic_public_ms"]
        / best["fixed_base_public_ms"],
    }


def decrypt_floor(pub: PublicKey, priv: PrivateKey, count: int = 24, rounds: int = 3) -> dict:
    """One ciphertext's CRT decryption (what devices run) against the bare floor: the two
    ``powmod(c, p-1, p^2)`` and ``powmod(c, q-1, q^2)`` it cannot avoid; interleaved."""
    n, p, q = pub.n, int(priv.p), int(priv.q)
    cts = vector.encrypt_many(
        n,
        [secrets.randbits(n.bit_length() - 2) for _ in range(count)],
        obfuscators.random_obfuscators_crt(p, q, count),
    )
    p2, q2 = gmpy2.mpz(p) ** 2, gmpy2.mpz(q) ** 2
    pm1, qm1 = gmpy2.mpz(p - 1), gmpy2.mpz(q - 1)
    reduced = [(gmpy2.mpz(c) % p2, gmpy2.mpz(c) % q2) for c in cts]

    def bare(_: int) -> None:
        for cp, cq in reduced:
            gmpy2.powmod(cp, pm1, p2)
            gmpy2.powmod(cq, qm1, q2)

    def full(_: int) -> None:
        vector.decrypt_chunk(n, p, q, cts)

    floor_ms = decrypt_ms = float("inf")
    for _ in range(rounds):
        floor_ms = min(floor_ms, _best_ms(bare, 1, 1) / count)
        decrypt_ms = min(decrypt_ms, _best_ms(full, 1, 1) / count)
    return {
        "decrypt_ms_per_ciphertext": decrypt_ms,
        "powmod_floor_ms_per_ciphertext": floor_ms,
        "decrypt_over_floor": decrypt_ms / floor_ms,
    }


def fedavg_error(
    pub: PublicKey,
    priv: PrivateKey,
    params: CodecParams,
    devices: int = 10,
    n_values: int = 5125,
    seed: int = 7,
) -> dict[str, Any]:
    """``devices`` devices of unequal size (10 .. 10**5 examples) through the real sum: max
    |decoded - exact FedAvg of the clipped values|, in quantization steps of the default codec
    (2*4/(2**16-1)) and relative to the largest |exact| value (issue 9: within 1 %)."""
    rng = np.random.default_rng(seed)
    counts = [int(c) for c in (10 ** rng.uniform(1, 5, devices)).astype(int)]
    updates = [[rng.normal(0.0, 0.5, n_values).astype(np.float32)] for _ in counts]
    r = time_packed(pub, priv, params, updates, counts, workers=2)
    exact = exact_fedavg(updates, counts, params.clip)
    default_step = 2 * 4.0 / (2**16 - 1)
    return {
        "devices": devices,
        "num_examples": counts,
        "max_abs_error": r["max_abs_error"],
        "error_bound": r["error_bound"],
        "error_over_default_step": r["max_abs_error"] / default_step,
        "error_over_max_abs_exact": r["max_abs_error"] / max(float(np.abs(e).max()) for e in exact),
    }
