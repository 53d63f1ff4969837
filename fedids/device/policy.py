"""The device decides: what protects a site comes from its node-config, never from the run.

A run-config is written by whoever starts ``flwr run``; a node-config is written by the
site that runs ``flower-supernode``. Everything that protects the site's data is read here
from the node-config only:

* whether plaintext weights may leave the device (``allow-plain``; a device with a
  ``key-dir`` refuses ``mode='plain'`` unless it says so),
* which Paillier key it uses (``key-dir``, mandatory for Paillier outside simulation: no
  key is ever generated on a deployed device) and which key it accepts
  (``expected-fingerprint``),
* where its plaintext may go (``eaas-url``, ``eaas-token-file``, ``eaas-ca-file``,
  ``eaas-timeout``, ``eaas-fallback-local``: an Encryption-as-a-Service is never chosen by
  the server),
* the least number of contributors an aggregate must have before the device decrypts it
  (``min-contributors``, default 2: decrypting one site's model hands it to everyone),
* how far a new global model may move from the previous one (``max-change``),
* where the device writes its model (``run-dir``).

In a simulation all "devices" belong to the operator who starts the run, and the
simulation engine (not the operator's node-config) creates them: there, the run's mode
applies and keys are made once in the run directory. Whether a ClientApp runs in a
simulation is read from the process it runs in (a Ray actor of Flower's simulation
engine), which no run-config can change.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: node-config keys fedids reads (anything else is ignored, with a warning by the client)
NODE_KEYS = (
    "partition-id",
    "num-partitions",
    "data-path",
    "key-dir",
    "expected-fingerprint",
    "allow-plain",
    "min-contributors",
    "max-change",
    "run-dir",
    "eaas-url",
    "eaas-token-file",
    "eaas-ca-file",
    "eaas-timeout",
    "eaas-fallback-local",
)

DEFAULT_MIN_CONTRIBUTORS = 2
DEFAULT_DEVICE_RUN_DIR = "~/.fedids/runs"


class PolicyError(ValueError):
    """The run asks for something this device's node-config does not allow (one line)."""


def running_in_simulation() -> bool:
    """True inside a Ray actor of Flower's simulation engine (a deployed SuperNode runs the
    ClientApp in ``flwr-clientapp``, where Ray is not even imported)."""
    ray = sys.modules.get("ray")
    if ray is None:
        return False
    try:
        return bool(ray.is_initialized()) and ray.get_runtime_context().get_actor_id() is not None
    except Exception:  # noqa: BLE001 - any doubt means "not a simulation"
        return False


def _bool(node: Mapping[str, Any], key: str, default: bool) -> bool:
    value = node.get(key)
    if value in (None, ""):
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise PolicyError(f"node-config {key}={value!r}: use true or false")


def _text(node: Mapping[str, Any], key: str) -> str | None:
    value = node.get(key)
    return None if value in (None, "") else str(value)


def _positive_int(node: Mapping[str, Any], key: str, default: int) -> int:
    value = node.get(key)
    if value in (None, ""):
        return default
    try:
        out = int(value)
    except (TypeError, ValueError):
        raise PolicyError(f"node-config {key}={value!r}: must be a whole number") from None
    if out < 1:
        raise PolicyError(f"node-config {key}={value!r}: must be at least 1")
    return out


@dataclass(frozen=True)
class EaaSSettings:
    url: str
    token_file: str
    ca_file: str | None
    timeout: float
    fallback_local: bool


@dataclass(frozen=True)
class DevicePolicy:
    """This device's own rules; built from node-config by :meth:`from_node_config`."""

    partition_id: int
    num_partitions: int
    simulation: bool
    data_path: str | None = None
    key_dir: str | None = None
    expected_fingerprint: str | None = None
    allow_plain: bool = False
    min_contributors: int = DEFAULT_MIN_CONTRIBUTORS
    max_change: float | None = None  # None: derived from the training settings ("auto")
    run_dir: str | None = None
    eaas: EaaSSettings | None = None

    @classmethod
    def from_node_config(
        cls, node: Mapping[str, Any], *, simulation: bool | None = None
    ) -> DevicePolicy:
        sim = running_in_simulation() if simulation is None else simulation
        try:
            partition_id = int(node["partition-id"])
            num_partitions = int(node["num-partitions"])
        except KeyError as exc:
            raise PolicyError(
                f"node-config lacks {exc.args[0]!r}: start the supernode with "
                "--node-config 'partition-id=0 num-partitions=2'"
            ) from None
        except (TypeError, ValueError):
            raise PolicyError(
                "node-config partition-id and num-partitions must be integers"
            ) from None
        if not 0 <= partition_id < num_partitions:
            raise PolicyError(
                f"node-config partition-id={partition_id} is out of range for "
                f"num-partitions={num_partitions}"
            )
        key_dir = _text(node, "key-dir")
        fingerprint = _text(node, "expected-fingerprint")
        if fingerprint is not None:
            fingerprint = fingerprint.strip().lower()
            if len(fingerprint) != 64 or any(c not in "0123456789abcdef" for c in fingerprint):
                raise PolicyError(
                    "node-config expected-fingerprint must be the 64-hex-digit fingerprint "
                    "printed by `fedids keygen`"
                )
        max_change = None
        raw_change = _text(node, "max-change")
        if raw_change is not None and raw_change.lower() != "auto":
            try:
                max_change = float(raw_change)
            except ValueError:
                raise PolicyError(
                    f"node-config max-change={raw_change!r}: a number or 'auto'"
                ) from None
            if not (max_change > 0 and math.isfinite(max_change)):
                raise PolicyError(f"node-config max-change={raw_change!r} must be positive")
        eaas = None
        url = _text(node, "eaas-url")
        if url is not None:
            token_file = _text(node, "eaas-token-file")
            if token_file is None:
                raise PolicyError("node-config eaas-url is set but eaas-token-file is not")
            try:
                timeout = float(node.get("eaas-timeout") or 30.0)
            except (TypeError, ValueError):
                raise PolicyError("node-config eaas-timeout must be seconds") from None
            eaas = EaaSSettings(
                url=url,
                token_file=token_file,
                ca_file=_text(node, "eaas-ca-file"),
                timeout=timeout,
                fallback_local=_bool(node, "eaas-fallback-local", False),
            )
        default_min = (
            min(DEFAULT_MIN_CONTRIBUTORS, num_partitions) if sim else (DEFAULT_MIN_CONTRIBUTORS)
        )
        return cls(
            partition_id=partition_id,
            num_partitions=num_partitions,
            simulation=sim,
            data_path=_text(node, "data-path"),
            key_dir=key_dir,
            expected_fingerprint=fingerprint,
            allow_plain=_bool(node, "allow-plain", False),
            min_contributors=_positive_int(node, "min-contributors", default_min),
            max_change=max_change,
            run_dir=_text(node, "run-dir"),
            eaas=eaas,
        )

    # -- decisions ---------------------------------------------------------------------------
    def mode(self, requested: str) -> str:
        """The mode this device trains in, given what the run asks for."""
        if requested == "plain":
            if self.key_dir and not self.allow_plain:
                raise PolicyError(
                    f"device {self.partition_id} refuses mode='plain': it has a key-dir, so it "
                    "sends only encrypted updates (node-config allow-plain=true would allow it)"
                )
            if self.eaas is not None:
                raise PolicyError(
                    f"device {self.partition_id} refuses mode='plain': its node-config names an "
                    "encryption service (eaas-url)"
                )
            return "plain"
        if requested == "paillier":
            if not self.key_dir and not self.simulation:
                raise PolicyError(
                    f"device {self.partition_id} cannot run mode='paillier': node-config "
                    "key-dir is not set (a deployed device never generates keys; copy the "
                    "federation's key pair made by `fedids keygen` and set key-dir)"
                )
            return "paillier"
        raise PolicyError(f"device {self.partition_id}: unknown mode {requested!r}")

    def key_directory(self, run_path: str) -> tuple[Path, bool]:
        """(directory holding this device's Paillier keys, whether it may create them)."""
        if self.key_dir:
            return Path(self.key_dir).expanduser(), False
        if not self.simulation:  # mode() refuses this already; never generate on a device
            raise PolicyError("Paillier mode needs node-config key-dir on a deployed device")
        if not run_path:
            raise PolicyError("simulation without a run path: cannot place the run's keys")
        return Path(run_path) / "keys", True

    def model_directory(self, run_path: str, run_id: int) -> Path | None:
        """Where this device writes its model: its own run-dir, or the run's folder in a
        simulation (the same machine). A deployed device never writes to a path the
        server names."""
        if self.run_dir:
            return Path(self.run_dir).expanduser() / f"run-{run_id}"
        if self.simulation:
            return Path(run_path) if run_path else None
        return Path(DEFAULT_DEVICE_RUN_DIR).expanduser() / f"run-{run_id}"
