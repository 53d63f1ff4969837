"""The table ``fedids bench`` prints (every figure is also in the JSON)."""

from __future__ import annotations

from typing import Any


def _f(value: Any, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def _rounds(result: dict[str, Any]) -> list[str]:
    r = result.get("rounds")
    if not r:
        return ["rounds: not run (--skip-rounds)"]
    lines = ["round (steady state, median; slowest client's fit + aggregation)   seconds"]
    for name, label in (
        ("plain", "plain FedAvg"),
        ("paillier", "packed Paillier, precompute during training"),
        ("paillier_no_precompute", "packed Paillier, no precompute"),
    ):
        x = r[name]
        lines.append(
            f"  {label:<50} {x['round_seconds']:8.3f}   (train {x['train_seconds']:.3f}, "
            f"decrypt {x['decrypt_seconds']:.3f}, encrypt {x['encrypt_seconds']:.3f}, "
            f"aggregate {x['aggregate_seconds']:.3f})"
        )
    o = result.get("paillier_round_overhead")
    if o:
        lines.append(
            f"  Paillier adds: fit besides training {o['fit_besides_training']:+.3f}, evaluate "
            f"{o['evaluate']:+.3f}, sum {o['aggregate']:+.3f} = {o['without_training']:+.3f} s "
            f"({o['without_training_over_plain_round']:.3f}x the plain round); training "
            f"{o['training']:+.3f} (same work: noise, or contention)"
        )
        lines.append(
            f"  round-time ratio: of medians {result['paillier_over_plain_round_time']:.3f}, "
            f"median of interleaved pairs {result['paillier_over_plain_round_time_paired']:.3f}"
        )
    return lines


def _crypto(result: dict[str, Any]) -> list[str]:
    c, s = result["crypto"], result["settings"]
    lines = ["crypto only (v2): all devices encrypt + server sums + one decrypts   seconds"]
    for name, label in (
        ("naive_phe", f"per-value phe (extrapolated from {c['naive_phe']['sample_values']})"),
        ("packed_1_worker", "packed, 1 worker, public-key obfuscators, critical path"),
        ("packed", f"packed, {s['workers']} workers, CRT obfuscators, critical path"),
    ):
        x = c[name]
        lines.append(
            f"  {label:<58} {x['total_seconds']:8.3f}   (enc {x['encrypt_seconds']:.3f}, "
            f"agg {x['aggregate_seconds']:.3f}, dec {x['decrypt_seconds']:.3f})"
        )
    p = c["packed"]
    lines.append(
        f"  {'packed, obfuscators precomputed (critical path only)':<58} "
        f"{p['critical_path_with_precompute_seconds']:8.3f}"
    )
    o, d = c["obfuscators"], c["decryption"]
    lines += [
        "",
        f"obfuscator, ms each (1 thread): r^n {o['classic_public_ms']:.2f}, r^n by CRT "
        f"{o['classic_crt_ms']:.2f}, h_s^a {o['fixed_base_public_ms']:.2f}, h_s^a by CRT "
        f"{o['fixed_base_crt_ms']:.2f} ({o['short_exponent_bits']}-bit a, "
        f"{o['window_bits']}-bit windows)",
        f"decryption, ms per ciphertext: {d['decrypt_ms_per_ciphertext']:.3f} vs bare powmod "
        f"floor {d['powmod_floor_ms_per_ciphertext']:.3f} ({d['decrypt_over_floor']:.2f}x)",
        f"accuracy: max |packed - exact FedAvg| = {p['max_abs_error']:.2e} "
        f"(bound {p['error_bound']:.2e}); 10 unequal devices: "
        f"{c['fedavg_k10']['error_over_default_step']:.3f} steps; 100 unequal devices: "
        f"{c['fedavg_k100']['error_over_default_step']:.3f} steps, "
        f"{100 * c['fedavg_k100']['error_over_max_abs_exact']:.4f} % of max |exact|",
    ]
    return lines


def _peers(result: dict[str, Any]) -> list[str]:
    if not result["peers"]:
        return ["peers: not run (TenSEAL not installed, or --no-peers)"]
    lines = ["peers: per client, medians of interleaved runs   client s   server s   up B   down B"]
    for n_params, r in result["peers"].items():
        for name in ("packed", "ckks"):
            x = r[name]
            lines.append(
                f"  {n_params:>7} params {name:<7} {x['client_seconds']:10.4f} "
                f"{x['aggregate_seconds']:10.4f} {x['upload_bytes_per_client']:>10} "
                f"{x['download_bytes_per_client']:>10}   err {x['max_abs_error']:.1e}"
            )
        lines.append(
            f"  {'':>7} packed/ckks: client {r['packed_client_over_ckks']:.1f}x, upload "
            f"{r['packed_upload_over_ckks']:.3f}x; Paillier faster below "
            f"{r['breakeven_link_mbit_per_s']:.1f} Mbit/s"
        )
    return lines


def format_table(result: dict[str, Any]) -> str:
    """A readable summary of :func:`fedids.bench.run_bench`'s result."""
    s, c, b = result["settings"], result["crypto"], result["bytes"]
    lines = [
        f"fedids bench: {s['clients']} clients, {s['key_bits']}-bit key, "
        f"{c['packed']['n_values']} parameters -> {c['packed']['n_ciphertexts']} ciphertexts "
        f"({result['codec']['model_slots_per_ciphertext']} slots of "
        f"{result['codec']['model_slot_bits']} bits), workers={s['workers']}",
        "",
        *_rounds(result),
        "",
        *_crypto(result),
        "",
        *_peers(result),
        "",
        f"upload per client (bytes): float32 arrays {b['float32_arrays_per_client']}, packed "
        f"arrays {b['packed_arrays_per_client']}, per-value ciphertexts "
        f"{b['naive_ciphertext_bytes_per_client']}",
        "",
        "targets",
    ]
    for name, t in result["targets"].items():
        met = {True: "met", False: "NOT MET", None: "not measured"}[t["met"]]
        lines.append(f"  {name:<34} {_f(t['value'], '10.3f'):>10}  target {t['target']:<8} {met}")
    lines.append(
        f"  {'(workers) speedup over per-value':<34} "
        f"{result['packed_speedup_over_naive_with_workers']:10.1f}"
    )
    return "\n".join(lines)
