"""What packed Paillier costs: a plain round, a packed-Paillier round, and per-value Paillier.

All three run in one process tree on the same data and the same model:

* **plain round** and **packed round**: the product's own ``FedIDSClient.fit`` (decrypt the
  global model if encrypted, train, encrypt) and the strategy's ``aggregate_fit``, called
  directly with ``FitRes`` objects (no Ray, no gRPC). Clients run one after the other here;
  on real devices they run in parallel, so a round's time is the slowest client's ``fit``
  plus the server's aggregation. Round 1 (plaintext initial model) is a warm-up; the
  figures are medians of the steady-state rounds, whose ``fit`` includes decrypting the
  previous aggregate. The modes are interleaved round by round so that they share the
  machine's background load. Packed rounds run twice: with precompute (obfuscators computed while
  the device trains, as configured by default; their CPU time overlaps training and shows
  up only as contention) and without (every obfuscator computed inside ``encrypt``).
* **crypto only**, packed vs per-value: encrypt every client's update, aggregate, decrypt
  once. Per-value is python-paillier's ``EncryptedNumber`` per parameter (the old system's
  way: ``encrypt(float)``, ``sum_k enc_k * (n_k/N)``, ``decrypt``), timed on a sample of
  values and extrapolated. Packed is timed in full (best of ``rounds`` runs; the sample
  likewise per chunk, since background load only adds time), with everything on the critical path
  (no precompute), once with one worker (like-for-like with single-threaded phe) and once
  with the configured workers and the obfuscators computed by the CRT (a device holds the
  private key; ``UpdateEncryptor(..., private_key=...)``).
"""

from __future__ import annotations

import dataclasses
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedids.crypto import codec, vector
from fedids.crypto.codec import CodecParams
from fedids.crypto.keys import PrivateKey, PublicKey, ensure_keypair, fingerprint
from fedids.crypto.update import AggregateDecryptor, UpdateEncryptor

TARGETS = {
    "paillier_over_plain_round_time": ("<=", 1.10),
    "packed_speedup_over_naive": (">=", 80.0),
    "upload_bytes_over_float32": ("<=", 1.5),
}


@dataclass
class BenchSettings:
    rows: int | None = None  # None: the dataset config's default
    clients: int = 2
    key_bits: int = 2048
    naive_sample: int = 200
    workers: int = 2
    rounds: int = 3  # steady-state rounds measured per mode (after one warm-up round)
    local_epochs: int = 1
    seed: int = 42
    key_dir: str | None = None  # default: a temporary directory


def _now() -> float:
    return time.perf_counter()


@dataclass
class Proxy:
    """Stands in for Flower's ClientProxy: the strategies only read ``cid``."""

    cid: str


# -- crypto only ---------------------------------------------------------------------------
def upload_bytes(arrays: Sequence[np.ndarray], metrics: dict[str, Any] | None = None) -> int:
    """Bytes of the arrays as Flower ships them (.npy each), plus metric keys and values."""
    from io import BytesIO

    total = 0
    for a in arrays:
        buf = BytesIO()
        np.save(buf, np.asarray(a), allow_pickle=False)
        total += len(buf.getvalue())
    for k, v in (metrics or {}).items():
        total += len(str(k)) + len(str(v))
    return total


def _fake_fit_results(payloads, num_examples, pub: PublicKey):
    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters

    metrics = {"pubkey_n": format(pub.n, "x"), "fingerprint": fingerprint(pub)}
    ok = Status(Code.OK, "")
    return [
        (Proxy(cid=str(i)), FitRes(ok, ndarrays_to_parameters(p), n, metrics | {"partition_id": i}))
        for i, (p, n) in enumerate(zip(payloads, num_examples, strict=True))
    ]


def time_packed(
    pub: PublicKey,
    priv: PrivateKey,
    params: CodecParams,
    updates: Sequence[Sequence[np.ndarray]],
    num_examples: Sequence[int],
    workers: int,
    crt: bool = False,
) -> dict[str, Any]:
    """Encrypt all updates (obfuscators included), aggregate with the strategy, decrypt once.

    ``crt``: compute obfuscators with the private key's factors (what a device can do)."""
    from flwr.common import parameters_to_ndarrays

    from strategies.paillier_fedavg import PaillierFedAvg

    pool = vector.WorkerPool(workers) if workers > 1 else None
    try:
        if pool is not None:  # start the workers outside the timing (a device keeps them)
            pool.submit(abs, 0).result()
        n_values = sum(int(a.size) for a in updates[0])
        n_ct = params.n_ciphertexts(n_values)
        t0 = _now()
        payloads = []
        obf_s = 0.0
        for w in updates:
            enc = UpdateEncryptor(
                pub, params, workers=workers, pool=pool, private_key=priv if crt else None
            )
            t1 = _now()
            enc.start_precompute(n_ct)
            enc.wait_precompute()  # time the obfuscators apart from the rest of encrypt
            obf_s += _now() - t1
            payloads.append(enc.encrypt(w))
        encrypt_s = _now() - t0
        strategy = PaillierFedAvg(
            codec=params, min_fit_clients=len(updates), min_available_clients=len(updates)
        )
        results = _fake_fit_results(payloads, num_examples, pub)
        t0 = _now()
        aggregated, _ = strategy.aggregate_fit(1, results, [])
        aggregate_s = _now() - t0
        shapes = [a.shape for a in updates[0]]
        dec = AggregateDecryptor(priv, params, workers=workers, pool=pool)
        t0 = _now()
        out = dec.decrypt(parameters_to_ndarrays(aggregated), shapes)
        decrypt_s = _now() - t0
    finally:
        if pool is not None:
            pool.close()
    exact = _weighted_average(updates, num_examples)
    weights = codec.integer_weights(num_examples, params)
    max_err = max(float(np.abs(o - e).max()) for o, e in zip(out, exact, strict=True))
    return {
        "workers": workers,
        "crt_obfuscators": crt,
        "n_values": n_values,
        "n_ciphertexts": n_ct,
        "encrypt_seconds": encrypt_s,
        "obfuscator_seconds": obf_s,
        "encrypt_without_obfuscators_seconds": encrypt_s - obf_s,
        "aggregate_seconds": aggregate_s,
        "decrypt_seconds": decrypt_s,
        "total_seconds": encrypt_s + aggregate_s + decrypt_s,
        "critical_path_with_precompute_seconds": encrypt_s - obf_s + aggregate_s + decrypt_s,
        "upload_bytes_per_client": upload_bytes(payloads[0]),
        "max_abs_error": max_err,
        "error_bound": codec.error_bound(params, num_examples, weights),
    }


def _weighted_average(updates, num_examples) -> list[np.ndarray]:
    total = float(sum(num_examples))
    return [
        sum(
            np.asarray(u[i], np.float64) * (n / total)
            for u, n in zip(updates, num_examples, strict=True)
        )
        for i in range(len(updates[0]))
    ]


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
    piece's (as :func:`_best_of` does for the packed figures), then extrapolated.
    """
    flat = [np.concatenate([np.asarray(a, np.float64).ravel() for a in u]) for u in updates]
    n_values = flat[0].size
    idx = np.random.default_rng(seed).choice(n_values, size=min(sample, n_values), replace=False)
    total = float(sum(num_examples))
    per_value: dict[str, list[float]] = {"encrypt": [], "aggregate": [], "decrypt": []}
    values: list[float] = []
    for part in np.array_split(idx, min(chunks, len(idx))):
        t0 = _now()
        encrypted = [[pub.encrypt(float(v)) for v in f[part]] for f in flat]
        per_value["encrypt"].append((_now() - t0) / len(part))
        t0 = _now()
        summed = []
        for j in range(len(part)):
            acc = encrypted[0][j] * (num_examples[0] / total)
            for k in range(1, len(encrypted)):
                acc = acc + encrypted[k][j] * (num_examples[k] / total)
            summed.append(acc)
        per_value["aggregate"].append((_now() - t0) / len(part))
        t0 = _now()
        values += [priv.decrypt(c) for c in summed]
        per_value["decrypt"].append((_now() - t0) / len(part))
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
        # each EncryptedNumber ships at least its ciphertext at fixed width (exponent aside)
        "upload_bytes_per_client": n_values * width,
        "max_abs_error": float(np.max(np.abs(np.array(values) - exact))),
    }


# -- rounds with the product's client ---------------------------------------------------------
def _compose(mode: str, settings: BenchSettings, extra: Sequence[str] = ()) -> dict[str, Any]:
    from fedids.config import compose_config, to_plain

    overrides = [
        f"federation.num_partitions={settings.clients}",
        f"federation.min_fit_clients={settings.clients}",
        f"federation.min_available_clients={settings.clients}",
        f"seed={settings.seed}",
        f"local_epochs={settings.local_epochs}",
    ]
    if settings.rows:
        overrides.append(f"dataset.rows={settings.rows}")
    if mode == "paillier":
        overrides += [f"mode.key_bits={settings.key_bits}", f"mode.workers={settings.workers}"]
    return to_plain(compose_config({"mode": mode}, overrides + list(extra)))


class RoundRunner:
    """Drives one mode's rounds with FedIDSClient, one round per :meth:`step`, so that the
    modes can be interleaved round by round and see the same background load."""

    def __init__(self, cfg: dict[str, Any], settings: BenchSettings, key_dir: str | None):
        from flwr.server.strategy import FedAvg

        from fedids.client_app import FedIDSClient

        self.cfg, self.settings, self.key_dir = cfg, settings, key_dir
        k = settings.clients
        self.paillier = cfg["mode"]["name"] == "paillier"
        if self.paillier:
            from strategies.paillier_fedavg import PaillierFedAvg

            self.strategy: Any = PaillierFedAvg(
                codec=CodecParams.from_config(cfg["mode"]),
                min_fit_clients=k,
                min_available_clients=k,
            )
        else:
            self.strategy = FedAvg(min_fit_clients=k, min_available_clients=k)
        self._client_cls = FedIDSClient
        self.params = self._clients()[0].get_parameters({})
        self.rounds: list[dict[str, Any]] = []

    def _clients(self) -> list[Any]:  # Flower builds a fresh client for every message
        k = self.settings.clients
        return [self._client_cls(self.cfg, i, k, key_dir=self.key_dir) for i in range(k)]

    def step(self, rnd: int) -> None:
        from flwr.common import (
            Code,
            FitRes,
            Status,
            ndarrays_to_parameters,
            parameters_to_ndarrays,
        )

        config = {"server_round": rnd, "local_epochs": self.settings.local_epochs}
        results, fit_s, metrics = [], [], []
        for i, c in enumerate(self._clients()):
            t0 = _now()
            arrays, n, m = c.fit(self.params, config)
            fit_s.append(_now() - t0)
            metrics.append(m)
            res = FitRes(Status(Code.OK, ""), ndarrays_to_parameters(arrays), n, m)
            results.append((Proxy(cid=str(i)), res))
        t0 = _now()
        aggregated, _ = self.strategy.aggregate_fit(rnd, results, [])
        aggregate_s = _now() - t0
        self.params = parameters_to_ndarrays(aggregated)
        self.rounds.append(
            {
                "round": rnd,
                "round_seconds": max(fit_s) + aggregate_s,
                "client_fit_seconds": fit_s,
                "aggregate_seconds": aggregate_s,
                "train_seconds": [float(m.get("train_seconds", 0.0)) for m in metrics],
                "decrypt_seconds": [float(m.get("decrypt_seconds", 0.0)) for m in metrics],
                "encrypt_seconds": [float(m.get("encrypt_seconds", 0.0)) for m in metrics],
                "upload_bytes_per_client": [
                    sum(len(t) for t in r.parameters.tensors)
                    + sum(len(str(a)) + len(str(b)) for a, b in r.metrics.items())
                    for _, r in results
                ],
                "num_examples": [r.num_examples for _, r in results],
            }
        )

    def summary(self) -> dict[str, Any]:
        """Medians over the steady-state rounds (round 1, on the plaintext init, excluded)."""
        steady = self.rounds[1:] or self.rounds

        def med(key: str, fn: Callable[[Any], float] = float) -> float:
            return statistics.median(fn(r[key]) for r in steady)

        return {
            "mode": self.cfg["mode"]["name"],
            "precompute": bool(self.cfg["mode"].get("precompute")) if self.paillier else None,
            "rounds": self.rounds,
            "round_seconds": med("round_seconds"),
            "train_seconds": med("train_seconds", max),
            "decrypt_seconds": med("decrypt_seconds", max),
            "encrypt_seconds": med("encrypt_seconds", max),
            "aggregate_seconds": med("aggregate_seconds"),
            "upload_bytes_per_client": max(steady[-1]["upload_bytes_per_client"]),
            "num_examples": steady[-1]["num_examples"],
        }


# -- driver --------------------------------------------------------------------------------------
def run_bench(settings: BenchSettings, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Everything, as one JSON-ready dict (``targets`` says which goals are met)."""
    tmp = None
    key_dir = settings.key_dir
    if key_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="fedids-bench-keys-")
        key_dir = tmp.name
    try:
        t0 = _now()
        pub, priv = ensure_keypair(Path(key_dir), settings.key_bits)
        keygen_s = _now() - t0
        params = CodecParams(key_bits=settings.key_bits).validate()
        out: dict[str, Any] = {
            "settings": settings.__dict__ | {"key_dir": None},
            "keygen_or_load_seconds": keygen_s,
            "codec": dataclasses.asdict(params)
            | {"slots_per_ciphertext": params.slots_per_ciphertext, "step": params.step},
        }
        say(
            f"rounds: plain, packed Paillier with and without precompute, interleaved "
            f"({settings.rounds} measured + 1 warm-up each) ..."
        )
        runners = {
            "plain": RoundRunner(_compose("plain", settings), settings, None),
            "paillier": RoundRunner(
                _compose("paillier", settings, ["mode.precompute=true"]), settings, key_dir
            ),
            "paillier_no_precompute": RoundRunner(
                _compose("paillier", settings, ["mode.precompute=false"]), settings, key_dir
            ),
        }
        for rnd in range(1, settings.rounds + 2):
            for runner in runners.values():
                runner.step(rnd)
        plain, packed, packed_nopre = (r.summary() for r in runners.values())
        final_plain = runners["plain"].params
        updates = _client_models(final_plain, settings)
        counts = plain["num_examples"]
        plain_bytes = upload_bytes(final_plain)
        say("crypto only: packed (1 worker; configured workers + CRT) and per-value phe ...")
        packed1 = _best_of(
            lambda: time_packed(pub, priv, params, updates, counts, workers=1), settings.rounds
        )
        packedw = _best_of(
            lambda: time_packed(pub, priv, params, updates, counts, settings.workers, crt=True),
            settings.rounds,
        )
        naive = time_naive(pub, priv, updates, counts, settings.naive_sample, settings.seed)

        out["rounds"] = {"plain": plain, "paillier": packed, "paillier_no_precompute": packed_nopre}
        out["crypto"] = {"packed_1_worker": packed1, "packed": packedw, "naive_phe": naive}
        out["bytes"] = {
            "float32_arrays_per_client": plain_bytes,
            "packed_arrays_per_client": packedw["upload_bytes_per_client"],
            "plain_upload_per_client": plain["upload_bytes_per_client"],
            "paillier_upload_per_client": packed["upload_bytes_per_client"],
            "naive_ciphertext_bytes_per_client": naive["upload_bytes_per_client"],
        }
        out["paillier_over_plain_round_time"] = packed["round_seconds"] / plain["round_seconds"]
        out["paillier_over_plain_round_time_no_precompute"] = (
            packed_nopre["round_seconds"] / plain["round_seconds"]
        )
        out["packed_speedup_over_naive"] = naive["total_seconds"] / packed1["total_seconds"]
        out["packed_speedup_over_naive_with_workers"] = (
            naive["total_seconds"] / packedw["total_seconds"]
        )
        out["packed_speedup_over_naive_critical_path_with_precompute"] = (
            naive["total_seconds"] / packedw["critical_path_with_precompute_seconds"]
        )
        out["upload_bytes_over_float32"] = (
            packed["upload_bytes_per_client"] / plain["upload_bytes_per_client"]
        )
        out["upload_bytes_over_float32_arrays_only"] = (
            packedw["upload_bytes_per_client"] / plain_bytes
        )
        out["targets"] = {
            name: {"target": f"{op} {limit}", "value": out[name], "met": _met(out[name], op, limit)}
            for name, (op, limit) in TARGETS.items()
        }
        return out
    finally:
        vector.shutdown_shared_pools()
        if tmp is not None:
            tmp.cleanup()


def _best_of(measure: Callable[[], dict[str, Any]], repeats: int) -> dict[str, Any]:
    """The fastest of ``repeats`` runs: background load only ever adds time."""
    runs = [measure() for _ in range(max(1, repeats))]
    best = min(runs, key=lambda r: r["total_seconds"])
    return best | {"repeats": len(runs)}


def _client_models(base: list[np.ndarray], settings: BenchSettings) -> list[list[np.ndarray]]:
    """Realistic updates for the crypto-only timing: the trained global model, perturbed per
    client as local training would (the cost does not depend on the values)."""
    rng = np.random.default_rng(settings.seed)
    return [
        [(w + rng.normal(0, 0.01, w.shape)).astype(np.float32) for w in base]
        for _ in range(settings.clients)
    ]


def _met(value: float, op: str, limit: float) -> bool:
    return value <= limit if op == "<=" else value >= limit


def format_table(result: dict[str, Any]) -> str:
    """A readable summary of :func:`run_bench`'s result."""
    r, c, b = result["rounds"], result["crypto"], result["bytes"]
    s = result["settings"]
    lines = [
        f"fedids bench: {s['clients']} clients, {s['key_bits']}-bit key, "
        f"{c['packed']['n_values']} parameters -> {c['packed']['n_ciphertexts']} ciphertexts "
        f"({result['codec']['slots_per_ciphertext']} slots each), workers={s['workers']}",
        "",
        "round (steady state, median; slowest client's fit + aggregation)   seconds",
    ]
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
    lines += ["", "crypto only: encrypt all clients + aggregate + decrypt once      seconds"]
    for name, label in (
        ("naive_phe", f"per-value phe (extrapolated from {c['naive_phe']['sample_values']})"),
        ("packed_1_worker", "packed, 1 worker, obfuscators on the critical path"),
        ("packed", f"packed, {s['workers']} workers, CRT obfuscators, on the critical path"),
    ):
        x = c[name]
        lines.append(
            f"  {label:<56} {x['total_seconds']:8.3f}   (enc {x['encrypt_seconds']:.3f}, "
            f"agg {x['aggregate_seconds']:.3f}, dec {x['decrypt_seconds']:.3f})"
        )
    lines.append(
        f"  {'packed, obfuscators precomputed (critical path only)':<56} "
        f"{c['packed']['critical_path_with_precompute_seconds']:8.3f}"
    )
    lines += [
        "",
        "upload per client (bytes)",
        f"  float32 arrays {b['float32_arrays_per_client']:>10}   packed arrays "
        f"{b['packed_arrays_per_client']:>10}   per-value ciphertexts "
        f"{b['naive_ciphertext_bytes_per_client']:>10}",
        f"  whole FitRes payload (arrays + metrics): plain {b['plain_upload_per_client']}, "
        f"paillier {b['paillier_upload_per_client']}",
        "",
        f"accuracy: max |packed - exact weighted average| = {c['packed']['max_abs_error']:.2e} "
        f"(bound {c['packed']['error_bound']:.2e})",
        "",
        "targets",
    ]
    for name, t in result["targets"].items():
        lines.append(
            f"  {name:<34} {t['value']:10.3f}  target {t['target']:<8} "
            f"{'met' if t['met'] else 'NOT MET'}"
        )
    lines += [
        f"  {'(no precompute) round time ratio':<34} "
        f"{result['paillier_over_plain_round_time_no_precompute']:10.3f}",
        f"  {'(workers) speedup over per-value':<34} "
        f"{result['packed_speedup_over_naive_with_workers']:10.1f}",
        f"  {'(precomputed) speedup, critical path':<34} "
        f"{result['packed_speedup_over_naive_critical_path_with_precompute']:10.1f}",
        f"  {'(arrays only) upload ratio':<34} "
        f"{result['upload_bytes_over_float32_arrays_only']:10.3f}",
    ]
    return "\n".join(lines)
