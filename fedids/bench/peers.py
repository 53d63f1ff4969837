"""Peers in the product's own benchmark: TenSEAL CKKS configured as NVFlare's HE does, beside
packed Paillier, on the same weight vectors, in one run, interleaved.

CKKS (NVFlare's settings): poly modulus degree 8192, coefficient moduli [60, 40, 40], scale
2**40; each client multiplies its weights by its sample count and encrypts the flat vector
(TenSEAL splits it into ciphertexts of 4096 slots); the server deserializes with a context
that holds no secret key and adds; each client decrypts and divides by the total count.
The vector is encrypted in chunks of 4096 values (one ciphertext each: what TenSEAL does
for a longer vector, without its warning; NVFlare's per-layer vectors would pad more).
Packed Paillier: :func:`fedids.bench.crypto.time_packed` (protocol v2, 2 workers, CRT
fixed-base obfuscators computed on the critical path). TenSEAL is the optional extra
``peers`` (``pip install .[peers]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fedids.bench.common import exact_fedavg, max_abs_error, medians, now
from fedids.bench.crypto import started_pool, time_packed
from fedids.crypto.codec import CodecParams
from fedids.crypto.keys import PrivateKey, PublicKey

NVFLARE_CKKS = {"poly_modulus_degree": 8192, "coeff_mod_bit_sizes": [60, 40, 40], "scale_bits": 40}


class PeersUnavailable(RuntimeError):
    """TenSEAL is not installed."""


def tenseal() -> Any:
    try:
        import tenseal as ts
    except ImportError:
        raise PeersUnavailable(
            "TenSEAL is not installed: `pip install 'fedids[peers]'` (or tenseal>=0.3.16)"
        ) from None
    return ts


def ckks_contexts(threads: int) -> tuple[Any, Any]:
    """(client context with the secret key, server context without it)."""
    ts = tenseal()
    ctx = ts.context(
        ts.SCHEME_TYPE.CKKS,
        poly_modulus_degree=NVFLARE_CKKS["poly_modulus_degree"],
        coeff_mod_bit_sizes=NVFLARE_CKKS["coeff_mod_bit_sizes"],
        n_threads=threads,
    )
    ctx.global_scale = 2 ** NVFLARE_CKKS["scale_bits"]
    server = ts.context_from(ctx.serialize(save_secret_key=False), n_threads=threads)
    assert not server.is_private()
    return ctx, server


def _chunks(flat: np.ndarray) -> list[list[float]]:
    slots = NVFLARE_CKKS["poly_modulus_degree"] // 2
    return [flat[i : i + slots].tolist() for i in range(0, flat.size, slots)]


def time_ckks(
    contexts: tuple[Any, Any],
    updates: Sequence[Sequence[np.ndarray]],
    num_examples: Sequence[int],
) -> dict[str, Any]:
    ts = tenseal()
    client_ctx, server_ctx = contexts
    shapes = [np.shape(a) for a in updates[0]]
    k = len(updates)
    uploads, enc_s = [], 0.0
    for w, n in zip(updates, num_examples, strict=True):
        flat = np.concatenate([np.asarray(a, np.float64).ravel() for a in w]) * float(n)
        t0 = now()
        uploads.append([ts.ckks_vector(client_ctx, c).serialize() for c in _chunks(flat)])
        enc_s += now() - t0
    t0 = now()
    acc = [ts.ckks_vector_from(server_ctx, blob) for blob in uploads[0]]
    for blobs in uploads[1:]:
        for i, blob in enumerate(blobs):
            acc[i] += ts.ckks_vector_from(server_ctx, blob)
    aggregate = [v.serialize() for v in acc]
    server_s = now() - t0
    t0 = now()
    flat = np.concatenate(
        [np.array(ts.ckks_vector_from(client_ctx, blob).decrypt()) for blob in aggregate]
    ) / float(sum(num_examples))
    out, start = [], 0
    for shape in shapes:
        size = int(np.prod(shape))
        out.append(flat[start : start + size].reshape(shape).astype(np.float32))
        start += size
    decrypt_s = now() - t0
    return {
        "encrypt_seconds_per_client": enc_s / k,
        "aggregate_seconds": server_s,
        "decrypt_seconds": decrypt_s,
        "client_seconds": enc_s / k + decrypt_s,
        "n_ciphertexts": len(aggregate),
        "upload_bytes_per_client": sum(len(b) for b in uploads[0]),
        "download_bytes_per_client": sum(len(b) for b in aggregate),
        "max_abs_error": max_abs_error(out, exact_fedavg(updates, num_examples)),
    }


def compare(
    pub: PublicKey,
    priv: PrivateKey,
    params: CodecParams,
    updates: Sequence[Sequence[np.ndarray]],
    num_examples: Sequence[int],
    workers: int = 2,
    repeats: int = 5,
) -> dict[str, Any]:
    """Medians of ``repeats`` interleaved runs of both, the ratios, and the break-even link.

    Per round a device waits for its own encryption and decryption, the server's sum and
    the transfers: ``T = client + server + (up + down) / link``. CKKS moves more bytes and
    Paillier spends more CPU, so Paillier is faster on links slower than
    ``(bytes_ckks - bytes_packed) / (cpu_packed - cpu_ckks)``.
    """
    contexts = ckks_contexts(workers)
    pool = started_pool(workers)
    try:
        ckks_runs, packed_runs = [], []
        for _ in range(repeats):
            ckks_runs.append(time_ckks(contexts, updates, num_examples))
            packed_runs.append(
                time_packed(pub, priv, params, updates, num_examples, workers, pool=pool)
            )
    finally:
        if pool is not None:
            pool.close()
    ckks, packed = medians(ckks_runs), medians(packed_runs)
    cpu = {
        name: r["client_seconds"] + r["aggregate_seconds"]
        for name, r in (("ckks", ckks), ("packed", packed))
    }
    moved = {
        name: r["upload_bytes_per_client"] + r["download_bytes_per_client"]
        for name, r in (("ckks", ckks), ("packed", packed))
    }
    extra_cpu = cpu["packed"] - cpu["ckks"]
    saved_bytes = moved["ckks"] - moved["packed"]
    breakeven = saved_bytes * 8 / extra_cpu / 1e6 if extra_cpu > 0 else float("inf")
    return {
        "settings": NVFLARE_CKKS | {"clients": len(updates), "workers": workers},
        "ckks": ckks,
        "packed": packed,
        "packed_client_over_ckks": packed["client_seconds"] / ckks["client_seconds"],
        "packed_server_over_ckks": packed["aggregate_seconds"] / ckks["aggregate_seconds"],
        "packed_upload_over_ckks": packed["upload_bytes_per_client"]
        / ckks["upload_bytes_per_client"],
        "packed_download_over_ckks": packed["download_bytes_per_client"]
        / ckks["download_bytes_per_client"],
        "breakeven_link_mbit_per_s": breakeven,
    }
