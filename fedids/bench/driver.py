"""``run_bench``: every figure of ``fedids bench`` as one JSON-ready dict, with its targets."""

from __future__ import annotations

import dataclasses
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedids.bench import crypto, peers
from fedids.bench.common import best_of, model_shapes, upload_bytes
from fedids.bench.rounds import RoundRunner, compose
from fedids.crypto import vector
from fedids.crypto.codec import CodecParams
from fedids.crypto.keys import ensure_keypair

TARGETS = {
    "paillier_over_plain_round_time": ("<=", 1.10),
    "packed_speedup_over_naive": (">=", 80.0),
    "upload_bytes_over_float32": ("<=", 1.5),
    "packed_client_over_ckks": ("<=", 20.0),
    "packed_upload_over_ckks": ("<=", 0.1),
    "fedavg_error_over_step_k10": ("<=", 2.0),
    "fedavg_relative_error_k100": ("<=", 0.01),
}


@dataclass
class BenchSettings:
    rows: int | None = None  # None: the dataset config's default
    clients: int = 2
    key_bits: int = 2048
    naive_sample: int = 200
    workers: int = 2
    rounds: int = 7  # steady-state rounds measured per mode (after one warm-up round)
    local_epochs: int = 1
    seed: int = 42
    key_dir: str | None = None  # default: a temporary directory
    peers: bool | None = None  # None: if TenSEAL is installed
    peer_clients: int = 10
    peer_params: tuple[int, ...] = (5125,)
    peer_repeats: int = 5
    skip_rounds: bool = False  # crypto-only (no training): for quick runs and tests
    k100_values: int = 5125  # model size of the 100-device FedAvg error figure


def _met(value: float | None, op: str, limit: float) -> bool | None:
    if value is None:
        return None
    return value <= limit if op == "<=" else value >= limit


def _client_models(base: list[np.ndarray], clients: int, seed: int) -> list[list[np.ndarray]]:
    """Realistic updates: the trained global model perturbed per client as local training
    would (the cost does not depend on the values)."""
    rng = np.random.default_rng(seed)
    return [
        [(w + rng.normal(0, 0.01, w.shape)).astype(np.float32) for w in base]
        for _ in range(clients)
    ]


def _peer_vectors(n_params: int, clients: int, seed: int) -> tuple[list, list[int]]:
    rng = np.random.default_rng(seed + n_params)
    shapes = model_shapes(n_params)
    updates = [[rng.normal(0, 0.3, s).astype(np.float32) for s in shapes] for _ in range(clients)]
    counts = [int(c) for c in (10 ** rng.uniform(2, 5, clients)).astype(int)]
    return updates, counts


def overhead_breakdown(plain: dict[str, Any], packed: dict[str, Any]) -> dict[str, float]:
    """Where a Paillier round's extra time goes (medians, seconds): the parts besides
    training (receive/encrypt in the fit, decrypt/score/encrypt counts in the evaluation,
    the server's sum), and the training difference, which is the same work in both modes
    and so only noise unless encryption slows training down (it did: GIL contention)."""
    parts = {
        "fit_besides_training": "fit_besides_training_seconds",
        "evaluate": "evaluate_seconds",
        "aggregate": "aggregate_seconds",
        "training": "train_part_seconds",
    }
    out = {name: packed[key] - plain[key] for name, key in parts.items()}
    out["without_training"] = sum(v for k, v in out.items() if k != "training")
    out["without_training_over_plain_round"] = (
        plain["round_seconds"] + out["without_training"]
    ) / plain["round_seconds"]
    return out


def run_bench(settings: BenchSettings, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Everything, as one JSON-ready dict (``targets`` says which goals are met)."""
    want_peers = settings.peers
    if want_peers is None:
        try:
            peers.tenseal()
            want_peers = True
        except peers.PeersUnavailable:
            want_peers = False
    elif want_peers:
        peers.tenseal()  # fail early, with the install hint
    tmp = None
    key_dir = settings.key_dir
    if key_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="fedids-bench-keys-")
        key_dir = tmp.name
    try:
        pub, priv = ensure_keypair(Path(key_dir), settings.key_bits)
        params = CodecParams(key_bits=settings.key_bits).validate()
        layout = params.model_layout
        out: dict[str, Any] = {
            "settings": dataclasses.asdict(settings) | {"key_dir": None},
            "codec": dataclasses.asdict(params)
            | {
                "model_slot_bits": layout.slot_bits,
                "model_slots_per_ciphertext": layout.per_plaintext,
                "fine_resolution_D": layout.D,
                "step": params.step,
            },
            "protocol": 2,
        }
        if settings.skip_rounds:
            plain = packed = packed_nopre = None
            base = [
                np.random.default_rng(settings.seed).normal(0, 0.3, s).astype(np.float32)
                for s in model_shapes(5125)
            ]
            counts = [1000 * (i + 1) for i in range(settings.clients)]
        else:
            say(
                f"rounds: plain, packed Paillier with and without precompute, interleaved "
                f"({settings.rounds} measured + 1 warm-up each) ..."
            )
            runners = {
                "plain": RoundRunner(compose("plain", settings), settings, None),
                "paillier": RoundRunner(
                    compose("paillier", settings, ["mode.precompute=true"]), settings, key_dir
                ),
                "paillier_no_precompute": RoundRunner(
                    compose("paillier", settings, ["mode.precompute=false"]), settings, key_dir
                ),
            }
            for rnd in range(1, settings.rounds + 2):
                for runner in runners.values():
                    runner.step(rnd)
            plain, packed, packed_nopre = (r.summary() for r in runners.values())
            base = runners["plain"].params
            counts = [1000 * (i + 1) for i in range(settings.clients)]  # unequal devices
            for runner in runners.values():
                runner.close()
        n_values = int(sum(w.size for w in base))
        out["model"] = {
            "parameters": n_values,
            "ciphertexts_per_update": params.n_model_ciphertexts(n_values),
            "shapes": [list(w.shape) for w in base],
        }
        updates = _client_models(base, settings.clients, settings.seed)
        say("crypto only: packed v2 (1 worker; workers + CRT) and per-value phe ...")
        packed1 = best_of(
            lambda: crypto.time_packed(pub, priv, params, updates, counts, 1, crt=False),
            settings.rounds,
            "total_seconds",
        )
        packedw = best_of(
            lambda: crypto.time_packed(pub, priv, params, updates, counts, settings.workers),
            settings.rounds,
            "total_seconds",
        )
        naive = crypto.time_naive(pub, priv, updates, counts, settings.naive_sample, settings.seed)
        say("obfuscators, decryption floor, FedAvg error of 10 unequal devices ...")
        obf = crypto.obfuscator_costs(pub, priv)
        floor = crypto.decrypt_floor(pub, priv)
        k10 = crypto.fedavg_error(pub, priv, params, devices=10)
        k100 = crypto.fedavg_error(pub, priv, params, devices=100, n_values=settings.k100_values)
        out["crypto"] = {
            "packed_1_worker": packed1,
            "packed": packedw,
            "naive_phe": naive,
            "obfuscators": obf,
            "decryption": floor,
            "fedavg_k10": k10,
            "fedavg_k100": k100,
        }
        out["peers"] = {}
        if want_peers:
            for n_params in settings.peer_params:
                say(f"peers: CKKS (NVFlare settings) vs packed Paillier, {n_params} params ...")
                vecs, peer_counts = _peer_vectors(n_params, settings.peer_clients, settings.seed)
                out["peers"][str(n_params)] = peers.compare(
                    pub, priv, params, vecs, peer_counts, settings.workers, settings.peer_repeats
                )
        float32_bytes = upload_bytes(base)
        out["bytes"] = {
            "float32_arrays_per_client": float32_bytes,
            "packed_arrays_per_client": packedw["upload_bytes_per_client"],
            "naive_ciphertext_bytes_per_client": naive["upload_bytes_per_client"],
        }
        if plain is not None:
            out["rounds"] = {
                "plain": plain,
                "paillier": packed,
                "paillier_no_precompute": packed_nopre,
            }
            out["bytes"] |= {
                "plain_upload_per_client": plain["upload_bytes_per_client"],
                "paillier_upload_per_client": packed["upload_bytes_per_client"],
            }
            out["paillier_over_plain_round_time"] = packed["round_seconds"] / plain["round_seconds"]
            out["paillier_over_plain_round_time_paired"] = statistics.median(
                b["round_seconds"] / a["round_seconds"]
                for a, b in zip(plain["rounds"][1:], packed["rounds"][1:], strict=True)
            )
            out["paillier_round_overhead"] = overhead_breakdown(plain, packed)
            out["paillier_over_plain_round_time_no_precompute"] = (
                packed_nopre["round_seconds"] / plain["round_seconds"]
            )
            out["upload_bytes_over_float32"] = (
                packed["upload_bytes_per_client"] / plain["upload_bytes_per_client"]
            )
        else:
            out["paillier_over_plain_round_time"] = None
            out["upload_bytes_over_float32"] = packedw["upload_bytes_per_client"] / float32_bytes
        out["upload_bytes_over_float32_arrays_only"] = (
            packedw["upload_bytes_per_client"] / float32_bytes
        )
        out["packed_speedup_over_naive"] = naive["total_seconds"] / packed1["total_seconds"]
        out["packed_speedup_over_naive_with_workers"] = (
            naive["total_seconds"] / packedw["total_seconds"]
        )
        out["packed_speedup_over_naive_critical_path_with_precompute"] = (
            naive["total_seconds"] / packedw["critical_path_with_precompute_seconds"]
        )
        first = out["peers"].get(str(settings.peer_params[0])) if out["peers"] else None
        out["packed_client_over_ckks"] = first["packed_client_over_ckks"] if first else None
        out["packed_upload_over_ckks"] = first["packed_upload_over_ckks"] if first else None
        out["fedavg_error_over_step_k10"] = k10["error_over_default_step"]
        out["fedavg_relative_error_k100"] = k100["error_over_max_abs_exact"]
        out["targets"] = {
            name: {
                "target": f"{op} {limit}",
                "value": out[name],
                "met": _met(out[name], op, limit),
            }
            for name, (op, limit) in TARGETS.items()
        }
        return out
    finally:
        vector.shutdown_shared_pools()
        if tmp is not None:
            tmp.cleanup()
