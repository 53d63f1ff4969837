"""The device's side of Paillier mode: its keys, encryption (local or via EaaS), decryption.

Kept apart from ``client_app`` so the NumPyClient stays thin and so that this glue
(which key directory, which encryptor) is testable without Flower.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedids.crypto.codec import CodecParams
from fedids.crypto.keys import ensure_keypair, fingerprint, load_private_key, load_public_key
from fedids.crypto.update import AggregateDecryptor, UpdateEncryptor

log = logging.getLogger("fedids.client")

#: The aggregate a device decrypts for evaluation is the very payload it receives for the
#: next round's training: keep the last few decryptions (per process) to do it once.
_DECRYPTED: OrderedDict[str, list[np.ndarray]] = OrderedDict()
_DECRYPTED_MAX = 2


@dataclass
class SecureChannel:
    """Encrypts this device's updates and decrypts the aggregates it receives."""

    mode: dict[str, Any]
    params: CodecParams
    public_key: Any
    encryptor: UpdateEncryptor
    decryptor: AggregateDecryptor
    partition_id: int

    @classmethod
    def open(
        cls, mode: dict[str, Any], *, key_dir: str | None, run_path: str, partition_id: int
    ) -> SecureChannel:
        params = CodecParams.from_config(mode)  # validated: refuses overflow
        directory = key_dir or mode.get("key_dir")
        if directory:
            directory = Path(directory)
            if not (directory / "private.json").is_file():
                raise FileNotFoundError(
                    f"device {partition_id}: no Paillier private key in key-dir {directory} "
                    "(make one with `fedids keygen --out DIR` and give every device a copy)"
                )
        else:
            if not run_path:
                raise ValueError("Paillier mode needs a key-dir (node-config) or a run path")
            directory = Path(run_path) / "keys"
            ensure_keypair(directory, params.key_bits)  # simulation: shared by all devices
        public_key = load_public_key(directory)
        private_key = load_private_key(directory)
        workers = int(mode.get("workers", 2))
        return cls(
            mode=mode,
            params=params,
            public_key=public_key,
            # the device holds the private key anyway: r^n mod n^2 via CRT is ~3.7x cheaper
            encryptor=UpdateEncryptor(public_key, params, workers=workers, private_key=private_key),
            decryptor=AggregateDecryptor(private_key, params, workers=workers),
            partition_id=partition_id,
        )

    def start_precompute(self, n_values: int) -> None:
        if self.mode.get("precompute", True) and not self.mode.get("eaas_url"):
            self.encryptor.start_precompute(self.params.n_ciphertexts(n_values))

    def encrypt(self, weights: list[np.ndarray]) -> tuple[list[np.ndarray], dict[str, Any]]:
        """Wire arrays for the server, plus the metrics that name the key used."""
        extra = {
            "pubkey_n": format(self.public_key.n, "x"),
            "fingerprint": fingerprint(self.public_key),
        }
        url = self.mode.get("eaas_url")
        if not url:
            arrays = self.encryptor.encrypt(weights)
            extra["clipped_values"] = self.encryptor.last_clipped
            if self.encryptor.last_clipped:
                log.warning(
                    "device %d: %d weights clipped to +/-%g before encryption (raise mode.clip?)",
                    self.partition_id,
                    self.encryptor.last_clipped,
                    self.params.clip,
                )
            return arrays, extra
        from fedids.eaas.client import encrypt_update

        token_file = self.mode.get("eaas_token_file")
        if not token_file:
            raise ValueError("mode.eaas_url is set but mode.eaas_token_file is not")
        token = Path(token_file).read_text().strip()
        arrays = encrypt_update(
            weights,
            url=str(url),
            token=token,
            ca_file=self.mode.get("eaas_ca_file"),
            timeout=float(self.mode.get("eaas_timeout", 30)),
            fallback_encryptor=self.encryptor if self.mode.get("eaas_fallback_local") else None,
            expected_fingerprint=extra["fingerprint"],  # an EaaS holding another key is caught
            report=extra,  # records whether the service or the local fallback encrypted
        )
        return arrays, extra

    def decrypt(self, arrays: list[np.ndarray], shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
        digest = hashlib.sha256()
        for a in arrays:
            digest.update(np.ascontiguousarray(a).tobytes())
        digest.update(repr((list(shapes), self.decryptor.key_id)).encode())
        key = digest.hexdigest()
        if key in _DECRYPTED:
            _DECRYPTED.move_to_end(key)
            return [w.copy() for w in _DECRYPTED[key]]
        weights = self.decryptor.decrypt(arrays, shapes)
        _DECRYPTED[key] = [w.copy() for w in weights]
        while len(_DECRYPTED) > _DECRYPTED_MAX:
            _DECRYPTED.popitem(last=False)
        return weights
