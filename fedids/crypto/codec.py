"""Codec settings shared by devices (encode/decode) and the server (structure checks).

Protocol v2 (docs/paillier.md): a device clips its FULL weights to ``[-clip, clip]``, weights
them by its share ``n_k/N`` itself, quantizes the weighted value finely and packs it; the
server only adds (or multiplies by small integer staleness multipliers); the device divides
the sum by the encrypted share total. No per-device count travels in the clear and the FedAvg
weights are exact. :mod:`fedids.crypto.layout` holds the slot layouts and the exact
no-overflow bound; this module holds the settings and their validation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from fedids.crypto.binding import Binding, binding_tag, tag_key_from_factors  # noqa: F401

if TYPE_CHECKING:
    from fedids.crypto.layout import CountLayout, ModelLayout

#: Key sizes that configuration files may ask for (security policy, see ``from_config``).
PRODUCTION_KEY_BITS = (2048, 3072)
#: Smallest key the codec accepts at all (tests use 512/1024 bit keys for speed).
MIN_KEY_BITS = 512
MAX_KEY_BITS = 8192
MAX_VALUE_BITS = 32
MAX_CLIENTS_LIMIT = 1 << 20
MAX_MULTIPLIER_LIMIT = 1 << 16
MAX_COUNT_BITS = 52


class CodecConfigError(ValueError):
    """A codec configuration that could overflow or is out of range."""


@dataclass(frozen=True)
class CodecParams:
    """Packing parameters; every field travels in the wire header and must match exactly."""

    key_bits: int = 2048
    value_bits: int = 16  # resolution: step = 2*clip / (2**value_bits - 1)
    clip: float = 4.0
    max_clients: int = 128  # most updates summed into one aggregate (derives headroom)
    max_multiplier: int = 1  # largest integer multiplier the server may apply (staleness)
    count_bits: int = 32  # count vectors: every entry of ONE update is < 2**count_bits

    # -- shared quantities ----------------------------------------------------------------
    @property
    def max_quantized(self) -> int:
        return (1 << self.value_bits) - 1

    @property
    def step(self) -> float:
        """Quantization step: ``2*clip / (2**value_bits - 1)``."""
        return 2.0 * self.clip / self.max_quantized

    @property
    def key_bytes(self) -> int:
        return (self.key_bits + 7) // 8

    @property
    def plaintext_bits(self) -> int:
        """Bits usable in a plaintext: below ``2**(key_bits-1)``, itself below any
        ``key_bits``-bit n, so no sum the layouts allow ever wraps modulo n."""
        return self.key_bits - 1

    # -- v2 layouts ------------------------------------------------------------------------
    @cached_property
    def model_layout(self) -> ModelLayout:
        from fedids.crypto.layout import ModelLayout

        return ModelLayout(self)

    @cached_property
    def count_layout(self) -> CountLayout:
        from fedids.crypto.layout import CountLayout

        return CountLayout(self)

    def n_model_ciphertexts(self, n_values: int) -> int:
        return self.model_layout.n_ciphertexts(n_values)

    def n_count_ciphertexts(self, n_counts: int) -> int:
        return self.count_layout.n_ciphertexts(n_counts)

    def n_payload_ciphertexts(self, kind: int, n_values: int) -> int:
        """Ciphertexts of a payload of ``kind`` (a :class:`Binding` kind)."""
        if kind == Binding.MODEL:
            return self.n_model_ciphertexts(n_values)
        return self.n_count_ciphertexts(n_values)

    # -- validation ---------------------------------------------------------------------
    def validate(self) -> CodecParams:
        """Refuse any configuration that could overflow a slot or leave the valid range.

        Returns ``self`` so that ``CodecParams(...).validate()`` can be used inline.
        """
        names = (
            "key_bits",
            "value_bits",
            "max_clients",
            "max_multiplier",
            "count_bits",
        )
        problems = [
            f"{name} must be an integer, got {getattr(self, name)!r}"
            for name in names
            if not isinstance(getattr(self, name), int) or isinstance(getattr(self, name), bool)
        ]
        if problems:
            raise CodecConfigError("invalid Paillier codec settings: " + "; ".join(problems))
        ranges = {
            "key_bits": (MIN_KEY_BITS, MAX_KEY_BITS),
            "value_bits": (2, MAX_VALUE_BITS),
            "max_clients": (1, MAX_CLIENTS_LIMIT),
            "max_multiplier": (1, MAX_MULTIPLIER_LIMIT),
            "count_bits": (1, MAX_COUNT_BITS),
        }
        for name, (lo, hi) in ranges.items():
            value = getattr(self, name)
            if not lo <= value <= hi:
                problems.append(f"{name}={value} is out of range [{lo}, {hi}]")
        if not (isinstance(self.clip, int | float) and math.isfinite(self.clip) and self.clip > 0):
            problems.append(f"clip={self.clip!r} must be a finite number > 0")
        if problems:
            raise CodecConfigError("invalid Paillier codec settings: " + "; ".join(problems))
        for layout in (self.model_layout, self.count_layout):
            problems += layout.problems()
        if problems:
            raise CodecConfigError("Paillier codec could overflow: " + "; ".join(problems))
        return self

    @classmethod
    def from_config(cls, mode: Mapping[str, Any]) -> CodecParams:
        """Build from the ``mode`` config group; only production key sizes are accepted.

        Required: key_bits, value_bits, clip, max_clients. Optional: max_multiplier (1),
        count_bits (32).
        """
        try:
            params = cls(
                key_bits=int(mode["key_bits"]),
                value_bits=int(mode["value_bits"]),
                clip=float(mode["clip"]),
                max_clients=int(mode["max_clients"]),
                max_multiplier=int(mode.get("max_multiplier", 1)),
                count_bits=int(mode.get("count_bits", 32)),
            )
        except KeyError as exc:
            raise CodecConfigError(f"mode config lacks {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise CodecConfigError(f"mode config: {exc}") from None
        if params.key_bits not in PRODUCTION_KEY_BITS:
            raise CodecConfigError(
                f"mode.key_bits={params.key_bits}: use one of {PRODUCTION_KEY_BITS}"
            )
        return params.validate()
