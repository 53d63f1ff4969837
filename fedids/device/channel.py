"""How a device's numbers leave it and how the federation's numbers come back.

Two channels with one interface, so the device's protocol code does not care about the
mode it runs in:

* :class:`PlainChannel`: weights and count vectors go out as they are (plain FedAvg; the
  device's node-config must allow it, see :mod:`fedids.device.policy`).
* :class:`PaillierChannel`: the device pre-weights its model by its share of the
  federation's records and encrypts it (locally, or through the site's own
  Encryption-as-a-Service named in node-config); count vectors are encrypted too. What
  comes back is decrypted here and checked: the run, round and kind it claims, the key,
  and at least ``min-contributors`` contributors (counted inside the encryption, so the
  server cannot simply claim them).

Errors carry no key material: only fingerprints.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedids import protocol
from fedids.device.policy import DevicePolicy, PolicyError

log = logging.getLogger("fedids.client")


@dataclass(frozen=True)
class Received:
    """A decoded payload from the server and what it says about itself."""

    values: Any  # list[np.ndarray] (model) or np.ndarray (counts)
    contributors: int | None  # None in plain mode (the server's word is all there is)


class PlainChannel:
    mode = "plain"

    def __init__(self, run_id: int) -> None:
        self.run_id = protocol.wire_run_id(run_id)

    def metrics(self) -> dict[str, Any]:
        return {}

    def start_precompute(self, n_values: int) -> None:
        return None

    def send_model(
        self, weights: list[np.ndarray], *, share: float, round_: int, base_version: int
    ) -> list[np.ndarray]:
        return [np.asarray(w, dtype=np.float32) for w in weights]

    def send_counts(
        self, counts: np.ndarray, *, kind: int, tag: int, round_: int
    ) -> list[np.ndarray]:
        return protocol.plain_counts_payload(
            counts, kind=kind, tag=tag, run_id=self.run_id, round=round_
        )

    def receive_model(
        self, arrays: list[np.ndarray], shapes: list[tuple[int, ...]], *, round_: int
    ) -> Received:
        if len(arrays) != len(shapes) or any(
            tuple(a.shape) != tuple(s) or a.dtype != np.float32
            for a, s in zip(arrays, shapes, strict=False)
        ):
            raise protocol.ProtocolError(
                "the global model does not match this device's model (shapes or dtypes differ)"
            )
        if not all(np.isfinite(a).all() for a in arrays):
            raise protocol.ProtocolError("the global model holds NaN or infinite values")
        return Received([np.array(a, dtype=np.float32) for a in arrays], None)

    def receive_counts(
        self, arrays: list[np.ndarray], *, kind: int, tag: int, round_: int, n_counts: int
    ) -> Received:
        vec = protocol.read_plain_counts(
            arrays, kind=kind, tag=tag, run_id=self.run_id, round=round_
        )
        if vec.size != n_counts:
            raise protocol.ProtocolError(
                f"count vector has {vec.size} entries, {n_counts} expected"
            )
        return Received(vec, None)


class PaillierChannel:
    """Encrypts this device's numbers and decrypts (and checks) the federation's sums."""

    mode = "paillier"

    def __init__(
        self, policy: DevicePolicy, mode_cfg: dict[str, Any], run_id: int, run_path: str
    ) -> None:
        from fedids.crypto.codec import CodecParams
        from fedids.crypto.keys import (
            ensure_keypair,
            fingerprint,
            load_private_key,
            load_public_key,
        )
        from fedids.crypto.update import AggregateDecryptor, UpdateEncryptor

        self.policy = policy
        self.run_id = protocol.wire_run_id(run_id)
        self.params = CodecParams.from_config(mode_cfg)
        directory, may_create = policy.key_directory(run_path)
        if may_create:
            ensure_keypair(directory, self.params.key_bits)  # simulation: once, under a lock
        elif not (Path(directory) / "private.json").is_file():
            raise PolicyError(
                f"device {policy.partition_id}: no Paillier private key in key-dir {directory} "
                "(make one with `fedids keygen --out DIR` and give every device a copy)"
            )
        self.public_key = load_public_key(directory)
        private_key = load_private_key(directory)
        self.fingerprint = fingerprint(self.public_key)
        if policy.expected_fingerprint and policy.expected_fingerprint != self.fingerprint:
            raise PolicyError(
                f"device {policy.partition_id}: the key in {directory} has fingerprint "
                f"{self.fingerprint[:16]}..., node-config expected-fingerprint says "
                f"{policy.expected_fingerprint[:16]}..."
            )
        workers = int(mode_cfg.get("workers", 2))
        self.encryptor = UpdateEncryptor(
            self.public_key, self.params, workers=workers, private_key=private_key
        )
        self.decryptor = AggregateDecryptor(private_key, self.params, workers=workers)
        self._precompute = bool(mode_cfg.get("precompute", True))
        self.last_clipped = 0
        self.eaas_report: dict[str, Any] = {}

    def metrics(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "pubkey_n": format(self.public_key.n, "x"),
            "fingerprint": self.fingerprint,
        }
        if "encrypted_by" in self.eaas_report:  # which path encrypted (not an error text)
            out["encrypted_by"] = str(self.eaas_report["encrypted_by"])
        return out

    def _binding(self, kind: int, round_: int, base_version: int = 0, tag: int = 0) -> Any:
        from fedids.crypto.binding import Binding

        return Binding(
            run_id=self.run_id, round=round_, base_version=base_version, kind=kind, tag=tag
        )

    def start_precompute(self, n_values: int) -> None:
        if self._precompute and self.policy.eaas is None:
            self.encryptor.start_precompute(self.params.n_model_ciphertexts(n_values))

    def send_model(
        self, weights: list[np.ndarray], *, share: float, round_: int, base_version: int
    ) -> list[np.ndarray]:
        binding = self._binding(protocol.KIND_MODEL, round_, base_version)

        def local() -> list[np.ndarray]:
            arrays = self.encryptor.encrypt_model(weights, share=share, binding=binding)
            self.last_clipped = int(self.encryptor.last_stats.clipped)
            if self.last_clipped:
                log.warning(
                    "device %d: %d weights clipped to +/-%g before encryption",
                    self.policy.partition_id,
                    self.last_clipped,
                    self.params.clip,
                )
            return arrays

        if self.policy.eaas is None:
            return local()
        from fedids.eaas import wire as eaas_wire
        from fedids.eaas.client import encrypt_v2

        eaas = self.policy.eaas
        request = eaas_wire.EncryptRequest(
            op=eaas_wire.OP_MODEL,
            arrays=[np.asarray(w, dtype=np.float32) for w in weights],
            binding=binding,
            binding_tag=self.decryptor.binding_tag(binding),
            share=share,
        )
        return encrypt_v2(
            request,
            url=eaas.url,
            token=_read_token(eaas.token_file),
            ca_file=eaas.ca_file,
            timeout=eaas.timeout,
            fallback=local if eaas.fallback_local else None,
            expected_fingerprint=self.fingerprint,
            report=self.eaas_report,
        )

    def send_counts(
        self, counts: np.ndarray, *, kind: int, tag: int, round_: int
    ) -> list[np.ndarray]:
        binding = self._binding(kind, round_, tag=tag)
        return self.encryptor.encrypt_counts(np.asarray(counts, dtype=np.int64), binding=binding)

    def _decrypt(self, call: Any, what: str) -> Any:
        """Run a decryption; a refusal becomes one line naming this device and ``what``."""
        from fedids.crypto.wire import WireFormatError

        try:
            return call()
        except WireFormatError as exc:
            text = str(exc)
            if "min-contributors" in text:
                raise PolicyError(
                    f"device {self.policy.partition_id} refuses {what}: {text} (decrypting "
                    "fewer would reveal another site's numbers)"
                ) from None
            raise protocol.ProtocolError(
                f"device {self.policy.partition_id} refuses {what}: {text}"
            ) from None

    def receive_model(
        self, arrays: list[np.ndarray], shapes: list[tuple[int, ...]], *, round_: int
    ) -> Received:
        expect = self._binding(protocol.KIND_MODEL, round_, base_version=round_ - 1)
        weights, info = self._decrypt(
            lambda: self.decryptor.decrypt_model(
                arrays, shapes, expect=expect, min_contributors=self.policy.min_contributors
            ),
            f"the global model of round {round_}",
        )
        return Received(weights, info.contributors)

    def receive_counts(
        self, arrays: list[np.ndarray], *, kind: int, tag: int, round_: int, n_counts: int
    ) -> Received:
        expect = self._binding(kind, round_, tag=tag)
        what = "the statistics totals" if kind == protocol.KIND_STATS else "the evaluation totals"
        counts, info = self._decrypt(
            lambda: self.decryptor.decrypt_counts(
                arrays, n_counts, expect=expect, min_contributors=self.policy.min_contributors
            ),
            what,
        )
        return Received(counts, info.contributors)


def _read_token(path: str) -> str:
    """The EaaS bearer token; errors name the file, never its content."""
    try:
        token = Path(path).expanduser().read_text().strip()
    except OSError as exc:
        raise PolicyError(
            f"cannot read the EaaS token file {path} ({exc.__class__.__name__})"
        ) from None
    if not token:
        raise PolicyError(f"the EaaS token file {path} is empty")
    return token
