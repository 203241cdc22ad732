"""Secure aggregation: clients encrypt updates, the server sums them with integer weights
under encryption, clients decrypt the weighted average.

`mode="real"` runs SHE on packed ciphertexts. `mode="modeled"` keeps the same fixed-point
integers in the clear (numpy) and does the same integer arithmetic, reporting the same byte
sizes, so large simulations can skip the crypto; both give bit-identical averages.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from crypto import she
from crypto.encoding import PackedEncoder, SlotLayout
from crypto.errors import CryptoError, OverflowRiskError, PayloadError
from crypto.params import PAPER_PARAMS, SHEParams
from crypto.payload import KIND_AGGREGATE, KIND_VECTOR, decode_payload, encode_payload, payload_nbytes
from crypto.randomness import RandomSource
from crypto.she import PublicParams, SecretKey

__all__ = ["MODES", "Aggregator", "EncryptedAggregate", "EncryptedVector", "KeyHolder", "make_secure_aggregation"]

MODES = ("real", "modeled")
_MODELED_KEY_ID = b"modeled".ljust(16, b"\0")
_ENCRYPT_STREAM = 1

Body = tuple[int, ...] | np.ndarray  # ciphertexts (real) or fixed-point integers (modeled)


def _to_bytes(kind: int, key_id: bytes, layout: SlotLayout, body: Body, weight_sum: int, count: int) -> bytes:
    if isinstance(body, np.ndarray):
        raise PayloadError("a modeled payload has no ciphertexts to serialize; its `nbytes` is the size it models")
    return encode_payload(kind, key_id, layout, body, weight_sum, count)


@dataclass(frozen=True, eq=False)
class EncryptedVector:
    """One client's encrypted update. `nbytes` is what the uplink carries (same in both modes)."""

    layout: SlotLayout
    key_id: bytes
    body: Body

    @property
    def modeled(self) -> bool:
        return isinstance(self.body, np.ndarray)

    @property
    def nbytes(self) -> int:
        return payload_nbytes(self.layout)

    def to_bytes(self) -> bytes:
        """The checked wire format (real mode only)."""
        return _to_bytes(KIND_VECTOR, self.key_id, self.layout, self.body, 0, 1)

    @classmethod
    def from_bytes(cls, data: bytes, public: PublicParams) -> EncryptedVector:
        """Parse a payload; truncated, tampered or wrong-key data raise `PayloadError`."""
        payload = decode_payload(data, public, KIND_VECTOR)
        if (payload.weight_sum, payload.count) != (0, 1):
            raise PayloadError("encrypted vector header is corrupted (weight sum/count of a vector must be 0/1)")
        return cls(payload.layout, public.key_id, payload.ciphertexts)


@dataclass(frozen=True, eq=False)
class EncryptedAggregate:
    """A weighted sum of `count` encrypted vectors whose integer weights sum to `weight_sum`."""

    layout: SlotLayout
    key_id: bytes
    body: Body
    weight_sum: int
    count: int

    @property
    def modeled(self) -> bool:
        return isinstance(self.body, np.ndarray)

    @property
    def nbytes(self) -> int:
        return payload_nbytes(self.layout)

    def to_bytes(self) -> bytes:
        """The checked wire format (real mode only)."""
        return _to_bytes(KIND_AGGREGATE, self.key_id, self.layout, self.body, self.weight_sum, self.count)

    @classmethod
    def from_bytes(cls, data: bytes, public: PublicParams) -> EncryptedAggregate:
        """Parse a payload; truncated, tampered or wrong-key data raise `PayloadError`."""
        p = decode_payload(data, public, KIND_AGGREGATE)
        return cls(p.layout, public.key_id, p.ciphertexts, p.weight_sum, p.count)


def _check_payload(item: EncryptedVector | EncryptedAggregate, encoder: PackedEncoder, key_id: bytes) -> None:
    if item.key_id != key_id:
        raise PayloadError(
            f"payload belongs to key {item.key_id.hex()}, this side holds key {key_id.hex()} "
            "(or mixes modeled and real payloads)"
        )
    if item.layout != encoder.layout:
        raise PayloadError(f"payload layout {item.layout} differs from this encoder's {encoder.layout}")


class KeyHolder:
    """The clients' half: holds the secret key (real mode), encrypts updates, decrypts aggregates."""

    def __init__(self, encoder: PackedEncoder, secret: SecretKey | None = None, rng: RandomSource | None = None):
        if secret is not None and secret.params != encoder.params:
            raise CryptoError(f"secret key is for {secret.params.name!r}, the encoder for {encoder.params.name!r}")
        self._encoder = encoder
        self._secret = secret
        self._rng = rng or RandomSource()

    @property
    def mode(self) -> str:
        return "modeled" if self._secret is None else "real"

    @property
    def encoder(self) -> PackedEncoder:
        return self._encoder

    @property
    def public(self) -> PublicParams | None:
        """The public parameter to hand the server (None in modeled mode)."""
        return None if self._secret is None else self._secret.public

    @property
    def key_id(self) -> bytes:
        return _MODELED_KEY_ID if self._secret is None else self._secret.public.key_id

    def quantize(self, update: Any) -> np.ndarray:
        """The fixed-point integers of an update (int64), as encrypted."""
        return self._encoder.quantize(update)

    def encrypt(self, update: Any) -> EncryptedVector:
        """Encrypt a flat vector or state_dict; NaN/inf or values beyond value_bound are refused."""
        q = self._encoder.quantize(update)
        if self._secret is None:
            q.flags.writeable = False
            return EncryptedVector(self._encoder.layout, _MODELED_KEY_ID, q)
        cts = she.encrypt_many(self._secret, self._encoder.pack(q), self._rng)
        return EncryptedVector(self._encoder.layout, self.key_id, tuple(cts))

    def decrypt_sum(self, aggregate: EncryptedAggregate) -> np.ndarray:
        """The exact weighted sums sum_i w_i q_i per value (int64)."""
        _check_payload(aggregate, self._encoder, self.key_id)
        enc = self._encoder
        if not 1 <= aggregate.count <= enc.max_clients or not aggregate.count <= aggregate.weight_sum <= (
            aggregate.count * enc.max_weight
        ):
            raise OverflowRiskError(
                f"aggregate of {aggregate.count} clients with weight sum {aggregate.weight_sum} is outside what the "
                f"encoder was built for (<= {enc.max_clients} clients, weights <= {enc.max_weight})"
            )
        if self._secret is None:
            return aggregate.body.copy()
        return enc.unpack(she.decrypt_many(self._secret, aggregate.body))

    def decrypt_average(self, aggregate: EncryptedAggregate) -> np.ndarray:
        """The weighted average sum_i w_i q_i / sum_i w_i / 2^scale_bits (float64)."""
        totals = self.decrypt_sum(aggregate)
        return totals.astype(np.float64) / aggregate.weight_sum / 2.0**self._encoder.scale_bits


def _check_weights(weights: Sequence[int], count: int, encoder: PackedEncoder) -> list[int]:
    if count == 0:
        raise CryptoError("weighted_sum needs at least one encrypted vector")
    if len(weights) != count:
        raise CryptoError(f"got {count} vectors but {len(weights)} weights")
    if count > encoder.max_clients:
        raise OverflowRiskError(
            f"{count} vectors exceed max_clients={encoder.max_clients} the encoder's slots were sized for; "
            "build the encoder with a larger max_clients"
        )
    out = []
    for w in weights:
        if isinstance(w, (bool, np.bool_)):
            raise CryptoError(f"weight {w!r} is a bool; weights are ints in [1, {encoder.max_weight}]")
        try:
            w = operator.index(w)
        except TypeError:
            raise CryptoError(
                f"weight {w!r} ({type(w).__name__}) is not an integer; "
                f"round weights to ints in [1, {encoder.max_weight}]"
            ) from None
        if w < 1:
            raise CryptoError(f"weight {w} is below 1; weights are ints in [1, {encoder.max_weight}]")
        if w > encoder.max_weight:
            raise OverflowRiskError(
                f"weight {w} exceeds 2^weight_bits - 1 = {encoder.max_weight} the slots were sized for; "
                "rescale the weights or raise weight_bits"
            )
        out.append(w)
    return out


class Aggregator:
    """The server's half: weighted sums of encrypted vectors. Holds only public parameters."""

    def __init__(self, encoder: PackedEncoder, public: PublicParams | None = None):
        if public is not None and public.params != encoder.params:
            raise CryptoError(
                f"public parameter is for {public.params.name!r}, the encoder for {encoder.params.name!r}"
            )
        self._encoder = encoder
        self._public = public

    @property
    def mode(self) -> str:
        return "modeled" if self._public is None else "real"

    @property
    def encoder(self) -> PackedEncoder:
        return self._encoder

    @property
    def public(self) -> PublicParams | None:
        return self._public

    @property
    def key_id(self) -> bytes:
        return _MODELED_KEY_ID if self._public is None else self._public.key_id

    def weighted_sum(self, vectors: Sequence[EncryptedVector], weights: Sequence[int]) -> EncryptedAggregate:
        """sum_i w_i * vectors[i] under encryption, for int weights in [1, 2^weight_bits - 1]."""
        ints = _check_weights(weights, len(vectors), self._encoder)
        for vec in vectors:
            if not isinstance(vec, EncryptedVector):
                raise CryptoError(f"weighted_sum takes EncryptedVector items, got {type(vec).__name__}")
            _check_payload(vec, self._encoder, self.key_id)
        if self._public is None:
            total = np.zeros(self._encoder.num_values, dtype=np.int64)
            for vec, w in zip(vectors, ints):
                total += w * vec.body
            total.flags.writeable = False
            body: Body = total
        else:
            body = tuple(she.weighted_sum(self._public, [vec.body for vec in vectors], ints))
        return EncryptedAggregate(self._encoder.layout, self.key_id, body, sum(ints), len(ints))


def make_secure_aggregation(
    mode: str,
    params: SHEParams = PAPER_PARAMS,
    *,
    num_values: int,
    max_clients: int,
    weight_bits: int = 8,
    scale_bits: int = 16,
    value_bound: float = 8.0,
    seed: int | None = None,
    clip: bool = False,
) -> tuple[KeyHolder, Aggregator]:
    """Both halves of secure aggregation. seed=None: secure keys and randomness; an int seed:
    reproducible, NOT secure (simulations and tests)."""
    if mode not in MODES:
        raise CryptoError(f"unknown secure aggregation mode {mode!r}; use one of {', '.join(MODES)}")
    encoder = PackedEncoder(params, num_values, max_clients, weight_bits, scale_bits, value_bound, clip)
    if mode == "modeled":
        return KeyHolder(encoder), Aggregator(encoder)
    secret, public = she.keygen(params, seed)
    return KeyHolder(encoder, secret, RandomSource(seed, stream=_ENCRYPT_STREAM)), Aggregator(encoder, public)
