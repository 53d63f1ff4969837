"""Server side of packed Paillier: parse and check device payloads, sum them homomorphically.

Public key only: the server holds ``n`` and nothing else (no torch, no flwr here either).
``Enc(a) * Enc(b) = Enc(a + b)`` and ``Enc(a) ** m = Enc(m * a)`` (mod ``n**2``).

Protocol v2 (docs/paillier.md): :func:`parse_update` checks everything the server can check
about one payload and raises :class:`RejectedUpdate` with a one-line reason; the strategy
compares ``ParsedUpdate.binding`` with the run/round/kind it asked for and rejects a
``digest`` it has already seen in the run; :func:`sum_updates` adds the accepted updates
(model payloads with integer staleness multipliers ``1 <= m <= max_multiplier``, count
payloads unweighted) into the aggregate payload the devices decrypt.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import gmpy2
import numpy as np

from fedids.crypto import wire
from fedids.crypto.binding import Binding
from fedids.crypto.codec import CodecParams
from fedids.crypto.keys import fingerprint_of_n, key_id
from fedids.crypto.wire import WireFormatError, WireHeader


class RejectedUpdate(ValueError):
    """A device payload the server must not sum; ``reason`` is one line naming the problem."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ParsedUpdate:
    """A structurally valid update: what the strategy needs to accept or reject it."""

    header: WireHeader
    ciphertexts: tuple[int, ...]
    n: int
    digest: str  # SHA-256 (hex) of the ciphertext rows: reject one already seen in the run

    @property
    def binding(self) -> Binding:
        return self.header.binding

    @property
    def kind(self) -> int:
        return self.header.kind

    @property
    def n_values(self) -> int:
        return self.header.n_values


def ciphertext_digest(arrays_or_rows: Sequence[np.ndarray] | np.ndarray) -> str:
    """SHA-256 (hex) of a payload's ciphertext rows (``[header, rows]`` or the rows).

    Identical ciphertexts mean a replay: honest encryptions never repeat (fresh randomness
    per ciphertext). A replay re-randomized by someone holding the public key has another
    digest; the binding tag inside the plaintext catches that one at the devices.
    """
    rows = arrays_or_rows[1] if isinstance(arrays_or_rows, list | tuple) else arrays_or_rows
    return hashlib.sha256(np.ascontiguousarray(np.asarray(rows)).tobytes()).hexdigest()


def ciphertext_problem(ciphertexts: Sequence[int], n: int) -> str | None:
    """Why these are not valid ciphertexts for ``n`` (``None`` if they are).

    A valid ciphertext is an element of Z*_{n^2}: ``0 < c < n**2`` and coprime to ``n``.
    Anything else is not the output of an honest encryption and could break the sum.
    """
    n_mpz = gmpy2.mpz(n)
    n2 = n_mpz * n_mpz
    for i, c in enumerate(ciphertexts):
        if not 0 < c < n2:
            return f"ciphertext {i} is out of range (must be 0 < c < n^2)"
        if gmpy2.gcd(c, n_mpz) != 1:
            return f"ciphertext {i} is not invertible modulo n^2"
    return None


def parse_update(
    arrays: Sequence[np.ndarray],
    *,
    params: CodecParams,
    n: int,
    expect: Binding | None = None,
) -> ParsedUpdate:
    """Check one device payload against the server's codec and public key ``n``.

    Raises :class:`RejectedUpdate` unless: the arrays are a v2 fedids payload; its header
    matches ``params`` exactly (key size, value bits, clip, max_clients, max_multiplier,
    count_bits, ciphertext count for its size and kind); it is an update (not an aggregate)
    tagged with ``n``'s key id; ``n`` has ``key_bits`` bits; the ciphertext array is
    ``uint8[n_ct, 2*key_bytes]``; every ciphertext is in Z*_{n^2}; and, if ``expect`` is
    given, its binding equals ``expect``.
    """
    if not wire.is_encrypted_payload(arrays):
        raise RejectedUpdate("parameters are not a fedids Paillier payload (plaintext update?)")
    try:
        header = WireHeader.from_array(arrays[0])
        header.check_against(params)
        ciphertexts = wire.array_to_ciphertexts(arrays[1], header)
    except WireFormatError as exc:
        raise RejectedUpdate(str(exc)) from None
    if header.is_aggregate:
        raise RejectedUpdate("payload is an aggregate, not a device update")
    if int(n).bit_length() != params.key_bits or n % 2 == 0:
        raise RejectedUpdate(
            f"public key has {int(n).bit_length()} bits (expected an odd "
            f"{params.key_bits}-bit modulus)"
        )
    if header.key_id != key_id(fingerprint_of_n(n)):
        raise RejectedUpdate("encrypted under another public key (header key_id)")
    if expect is not None and header.binding != expect:
        raise RejectedUpdate(
            f"update for {header.binding.describe()}: {header.binding.differences(expect)}"
        )
    problem = ciphertext_problem(ciphertexts, n)
    if problem:
        raise RejectedUpdate(problem)
    return ParsedUpdate(header, tuple(ciphertexts), int(n), ciphertext_digest(arrays))


def sum_updates(
    updates: Sequence[ParsedUpdate], multipliers: Sequence[int], *, binding: Binding
) -> list[np.ndarray]:
    """The aggregate payload ``[header, ciphertexts]`` of ``updates``.

    Model updates: ciphertext ``j`` of the aggregate is ``prod_k c_kj ** m_k mod n^2`` with
    ``1 <= m_k <= max_multiplier`` (1 in synchronous FedAvg), except the meta ciphertext
    (``max_multiplier > 1``), always summed with multiplier 1 so that it counts contributors.
    Count updates: multipliers must all be 1. ``binding`` is the aggregate's (the devices
    check it); every update must have its run and kind. Raises ``ValueError`` for a call
    that could overflow or mix payloads (more than ``max_clients`` updates, another key,
    size, codec or kind).
    """
    if not updates:
        raise ValueError("no updates to sum")
    if len(multipliers) != len(updates):
        raise ValueError(f"{len(multipliers)} multipliers for {len(updates)} updates")
    first = updates[0].header
    cap = first.max_clients
    if len(updates) > cap:
        raise ValueError(f"{len(updates)} updates exceed max_clients={cap}: a slot could overflow")
    for u in updates:
        h = u.header
        same = (
            h.key_id,
            h.key_bits,
            h.value_bits,
            h.clip,
            h.max_clients,
            h.max_multiplier,
            h.count_bits,
            h.n_values,
            h.kind,
            u.n,
        )
        if same != (
            first.key_id,
            first.key_bits,
            first.value_bits,
            first.clip,
            first.max_clients,
            first.max_multiplier,
            first.count_bits,
            first.n_values,
            first.kind,
            updates[0].n,
        ):
            raise ValueError("updates differ in key, codec, size or kind: cannot be summed")
        if h.binding.run_id != binding.run_id or h.kind != binding.kind:
            raise ValueError(
                f"an update for {h.binding.describe()} cannot be summed into {binding.describe()}"
            )
    mults = [int(m) for m in multipliers]
    limit = first.max_multiplier if first.kind == Binding.MODEL else 1
    if any(isinstance(m, bool) or not 1 <= m <= limit for m in multipliers) or any(
        m != mm for m, mm in zip(multipliers, mults, strict=True)
    ):
        raise ValueError(f"multipliers must be integers in [1, {limit}] for this kind")
    has_meta = first.kind == Binding.MODEL and first.max_multiplier > 1
    n_mpz = gmpy2.mpz(updates[0].n)
    n2 = n_mpz * n_mpz
    summed = []
    for j in range(first.n_ciphertexts):
        acc = gmpy2.mpz(1)
        for u, m in zip(updates, mults, strict=True):
            c = gmpy2.mpz(u.ciphertexts[j])
            acc = acc * (c if m == 1 or (has_meta and j == 0) else gmpy2.powmod(c, m, n2)) % n2
        summed.append(int(acc))
    return wire.encode_payload(first.aggregate(binding, len(updates)), summed)
