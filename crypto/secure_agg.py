"""Secure aggregation: clients encrypt updates, the server sums them with integer weights
under encryption, clients decrypt the weighted average. One interface for both schemes.

`mode="real"` encrypts: SHE on packed ciphertexts (`SHEParams`) or BFV through TenSEAL
(`BFVParams`). `mode="modeled"` keeps the same fixed-point integers in the clear (numpy) and
does the same integer arithmetic, reporting the same byte sizes, so large simulations can
skip the crypto; real and modeled give bit-identical averages for either scheme.

The scheme-specific work sits behind two small protocols, both on ciphertext-aligned chunks:
a `ClientCipher` (secret key: encrypt int64 values, decrypt ciphertexts to slot values) and
a `ServerCipher` (public material only: weighted sums). With `workers > 1` a `KeyHolder` or
`Aggregator` splits an operation by ciphertext over its own worker processes (`crypto.parallel`).
"""

from __future__ import annotations

import operator
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np

from crypto import she
from crypto.bfv import BFVEncoder, BFVPublic, bfv_keygen
from crypto.encoding import FixedPointEncoder, PackedEncoder, SlotLayout, pack_slots, trim_padding, unpack_records
from crypto.errors import CryptoError, OverflowRiskError, PayloadError
from crypto.parallel import WorkerPool, run_split, split
from crypto.params import PAPER_PARAMS, BFVParams, SHEParams
from crypto.payload import KIND_AGGREGATE, KIND_VECTOR, Layout, decode_payload, encode_payload, payload_nbytes
from crypto.randomness import RandomSource
from crypto.she import PublicParams, SecretKey

__all__ = [
    "MODES",
    "Aggregator",
    "ClientCipher",
    "EncryptedAggregate",
    "EncryptedVector",
    "KeyHolder",
    "SHEClient",
    "SHEServer",
    "ServerCipher",
    "make_secure_aggregation",
]

MODES = ("real", "modeled")
_MODELED_KEY_ID = b"modeled".ljust(16, b"\0")
_ENCRYPT_STREAM = 1

Body = tuple[Any, ...] | np.ndarray  # ciphertexts (real: ints or serialized BFV) or fixed-point integers (modeled)
PublicKey = PublicParams | BFVPublic


class ClientCipher(Protocol):
    """A scheme's secret-key side, on ciphertext-aligned chunks of a vector."""

    @property
    def key_id(self) -> bytes: ...

    @property
    def min_chunk(self) -> int:
        """Ciphertexts per worker below which splitting an operation does not pay."""

    @property
    def public(self) -> PublicKey: ...

    def encrypt(self, values: np.ndarray, rng: RandomSource) -> list[Any]:
        """Ciphertexts of int64 `values`, the last one zero-padded."""

    def decrypt(self, ciphertexts: Sequence[Any]) -> np.ndarray:
        """Every slot value (int64) of `ciphertexts`, padding included."""


class ServerCipher(Protocol):
    """A scheme's public side: sums of ciphertexts multiplied by integers >= 1."""

    @property
    def key_id(self) -> bytes: ...

    @property
    def min_chunk(self) -> int: ...

    @property
    def public(self) -> PublicKey: ...

    def weighted_sum(self, bodies: Sequence[Sequence[Any]], weights: Sequence[int]) -> list[Any]:
        """Ciphertext by ciphertext, sum_i weights[i] * bodies[i]."""


@dataclass(frozen=True, eq=False)
class SHEClient:
    """SHE's secret-key side: pack slots, encrypt, decrypt, unpack."""

    secret: SecretKey
    layout: SlotLayout
    min_chunk: ClassVar[int] = 4096  # ~12 ms of encryption per worker: below it splitting does not pay

    @property
    def key_id(self) -> bytes:
        return self.secret.public.key_id

    @property
    def public(self) -> PublicParams:
        return self.secret.public

    def encrypt(self, values: np.ndarray, rng: RandomSource) -> list[int]:
        return she.encrypt_many(self.secret, pack_slots(self.layout, values), rng)

    def decrypt(self, ciphertexts: Sequence[int]) -> np.ndarray:
        return unpack_records(self.layout, she.decrypt_many(self.secret, ciphertexts))


@dataclass(frozen=True, eq=False)
class SHEServer:
    """SHE's public side: sums modulo N."""

    public: PublicParams
    # Never split: sending a 4096-bit ciphertext to a worker costs 1.2 us (pickling 0.59 us here,
    # unpickling 0.58 us there), three times what adding it into a ten-client sum costs (0.4 us).
    min_chunk: ClassVar[int] = sys.maxsize

    @property
    def key_id(self) -> bytes:
        return self.public.key_id

    def weighted_sum(self, bodies: Sequence[Sequence[int]], weights: Sequence[int]) -> list[int]:
        return she.weighted_sum(self.public, bodies, weights)


def _to_bytes(kind: int, key_id: bytes, layout: Layout, body: Body, weight_sum: int, count: int) -> bytes:
    if isinstance(body, np.ndarray):
        raise PayloadError("a modeled payload has no ciphertexts to serialize; its `nbytes` is the size it models")
    return encode_payload(kind, key_id, layout, body, weight_sum, count)


@dataclass(frozen=True, eq=False)
class EncryptedVector:
    """One client's encrypted update. `nbytes` is what the uplink carries (same in both modes)."""

    layout: Layout
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
    def from_bytes(cls, data: bytes, public: PublicKey) -> EncryptedVector:
        """Parse a payload; truncated, tampered or wrong-key data raise `PayloadError`."""
        payload = decode_payload(data, public, KIND_VECTOR)
        if (payload.weight_sum, payload.count) != (0, 1):
            raise PayloadError("encrypted vector header is corrupted (weight sum/count of a vector must be 0/1)")
        return cls(payload.layout, public.key_id, payload.ciphertexts)


@dataclass(frozen=True, eq=False)
class EncryptedAggregate:
    """A weighted sum of `count` encrypted vectors whose integer weights sum to `weight_sum`."""

    layout: Layout
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
    def from_bytes(cls, data: bytes, public: PublicKey) -> EncryptedAggregate:
        """Parse a payload; truncated, tampered or wrong-key data raise `PayloadError`."""
        p = decode_payload(data, public, KIND_AGGREGATE)
        return cls(p.layout, public.key_id, p.ciphertexts, p.weight_sum, p.count)


def _check_payload(item: EncryptedVector | EncryptedAggregate, encoder: FixedPointEncoder, key_id: bytes) -> None:
    if item.key_id != key_id:
        raise PayloadError(
            f"payload belongs to key {item.key_id.hex()}, this side holds key {key_id.hex()} "
            "(or mixes modeled and real payloads)"
        )
    if item.layout != encoder.layout:
        raise PayloadError(f"payload layout {item.layout} differs from this encoder's {encoder.layout}")


class _Split:
    """`workers`: how many processes split one large operation by ciphertext (this one included).

    The helper processes start at the first split operation. An object sent to another process
    (process or Ray executors) works there with one worker: those executors already spread the
    clients over the cores.
    """

    _pool: WorkerPool | None = None

    @property
    def workers(self) -> int:
        return 1 if self._pool is None else self._pool.workers

    @workers.setter
    def workers(self, workers: int) -> None:
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise CryptoError(f"workers must be an int >= 1, got {workers!r}")
        if workers == self.workers:
            return
        if self._pool is not None:
            self._pool.close()
        self._pool = WorkerPool(workers) if workers > 1 else None

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_pool"}


class KeyHolder(_Split):
    """The clients' half: holds the secret key (real mode), encrypts updates, decrypts aggregates.

    `cipher` is the scheme's secret-key side (None: modeled); `workers` > 1 splits large
    encryptions and decryptions by ciphertext over worker processes (see `_Split`).
    """

    def __init__(
        self,
        encoder: FixedPointEncoder,
        cipher: ClientCipher | None = None,
        rng: RandomSource | None = None,
        workers: int = 1,
    ) -> None:
        self._encoder = encoder
        self._cipher = cipher
        self._rng = rng or RandomSource()
        self.workers = workers

    @property
    def mode(self) -> str:
        return "modeled" if self._cipher is None else "real"

    @property
    def encoder(self) -> FixedPointEncoder:
        return self._encoder

    @property
    def public(self) -> PublicKey | None:
        """The public half to hand the server (None in modeled mode)."""
        return None if self._cipher is None else self._cipher.public

    @property
    def key_id(self) -> bytes:
        return _MODELED_KEY_ID if self._cipher is None else self._cipher.key_id

    def quantize(self, update: Any) -> np.ndarray:
        """The fixed-point integers of an update (int64), as encrypted."""
        return self._encoder.quantize(update)

    def encrypt(self, update: Any) -> EncryptedVector:
        """Encrypt a flat vector or state_dict; NaN/inf or values beyond value_bound are refused."""
        q = self._encoder.quantize(update)
        layout = self._encoder.layout
        cipher = self._cipher
        if cipher is None:
            q.flags.writeable = False
            return EncryptedVector(layout, _MODELED_KEY_ID, q)
        per = layout.slots_per_ciphertext
        ranges = split(layout.num_ciphertexts, self.workers, cipher.min_chunk)
        rngs = [self._rng] if len(ranges) == 1 else self._rng.spawn(len(ranges))
        args = [(q[a * per : b * per], rng) for (a, b), rng in zip(ranges, rngs)]
        parts = run_split(self._pool, cipher.encrypt, args)
        return EncryptedVector(layout, cipher.key_id, tuple(c for part in parts for c in part))

    def decrypt_sum(self, aggregate: EncryptedAggregate) -> np.ndarray:
        """The exact weighted sums sum_i w_i q_i per value (int64)."""
        enc = self._encoder
        _check_payload(aggregate, enc, self.key_id)
        if not 1 <= aggregate.count <= enc.max_clients or not aggregate.count <= aggregate.weight_sum <= (
            aggregate.count * enc.max_weight
        ):
            raise OverflowRiskError(
                f"aggregate of {aggregate.count} clients with weight sum {aggregate.weight_sum} is outside what the "
                f"encoder was built for (<= {enc.max_clients} clients, weights <= {enc.max_weight})"
            )
        cipher, body = self._cipher, aggregate.body
        if cipher is None or isinstance(body, np.ndarray):
            assert cipher is None and isinstance(body, np.ndarray)  # the key id check keeps modes apart
            return body.copy()
        ranges = split(len(body), self.workers, cipher.min_chunk)
        parts = run_split(self._pool, cipher.decrypt, [(body[a:b],) for a, b in ranges])
        totals = trim_padding(np.concatenate(parts), enc.num_values)
        if totals.size and int(np.abs(totals).max()) > aggregate.weight_sum * enc.max_quantized:
            raise CryptoError(
                "decrypted aggregate exceeds what its weight sum allows: wrong key, corrupted ciphertext, or a "
                "weight sum that does not match the ciphertexts"
            )
        return totals

    def decrypt_average(self, aggregate: EncryptedAggregate) -> np.ndarray:
        """The weighted average sum_i w_i q_i / sum_i w_i / 2^scale_bits (float64)."""
        totals = self.decrypt_sum(aggregate)
        return totals.astype(np.float64) / aggregate.weight_sum / 2.0**self._encoder.scale_bits


def _check_weights(weights: Sequence[int], count: int, encoder: FixedPointEncoder) -> list[int]:
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


class Aggregator(_Split):
    """The server's half: weighted sums of encrypted vectors. Holds only public material.

    `cipher` is the scheme's public side (None: modeled); `workers` > 1 splits large sums by
    ciphertext over worker processes of its own, which receive only public material.
    """

    def __init__(self, encoder: FixedPointEncoder, cipher: ServerCipher | None = None, workers: int = 1) -> None:
        self._encoder = encoder
        self._cipher = cipher
        self.workers = workers

    @property
    def mode(self) -> str:
        return "modeled" if self._cipher is None else "real"

    @property
    def encoder(self) -> FixedPointEncoder:
        return self._encoder

    @property
    def public(self) -> PublicKey | None:
        """The public material the sums use (None in modeled mode)."""
        return None if self._cipher is None else self._cipher.public

    @property
    def key_id(self) -> bytes:
        return _MODELED_KEY_ID if self._cipher is None else self._cipher.key_id

    def weighted_sum(self, vectors: Sequence[EncryptedVector], weights: Sequence[int]) -> EncryptedAggregate:
        """sum_i w_i * vectors[i] under encryption, for int weights in [1, 2^weight_bits - 1]."""
        ints = _check_weights(weights, len(vectors), self._encoder)
        for vec in vectors:
            if not isinstance(vec, EncryptedVector):
                raise CryptoError(f"weighted_sum takes EncryptedVector items, got {type(vec).__name__}")
            _check_payload(vec, self._encoder, self.key_id)
        layout = self._encoder.layout
        cipher = self._cipher
        body: Body
        if cipher is None:
            total = np.zeros(self._encoder.num_values, dtype=np.int64)
            for vec, w in zip(vectors, ints):
                total += w * vec.body
            total.flags.writeable = False
            body = total
        else:
            bodies = [vec.body for vec in vectors if isinstance(vec.body, tuple)]
            if len(bodies) != len(vectors):
                raise PayloadError("a payload without ciphertexts (modeled) cannot enter a real sum")
            ranges = split(layout.num_ciphertexts, self.workers, cipher.min_chunk)
            args = [([v[a:b] for v in bodies], ints) for a, b in ranges]
            body = tuple(c for part in run_split(self._pool, cipher.weighted_sum, args) for c in part)
        return EncryptedAggregate(layout, self.key_id, body, sum(ints), len(ints))


def make_secure_aggregation(
    mode: str,
    params: SHEParams | BFVParams = PAPER_PARAMS,
    *,
    num_values: int,
    max_clients: int,
    weight_bits: int = 8,
    scale_bits: int = 16,
    value_bound: float = 8.0,
    seed: int | None = None,
    clip: bool = False,
    workers: int = 1,
) -> tuple[KeyHolder, Aggregator]:
    """Both halves of secure aggregation for SHE (`SHEParams`) or BFV (`BFVParams`).

    seed=None: secure keys and randomness; an int seed: reproducible SHE keys and encryption
    randomness, NOT secure (simulations and tests). BFV keys and noise always come from SEAL's
    CSPRNG (decryption is exact, so results are reproducible all the same).
    """
    if mode not in MODES:
        raise CryptoError(f"unknown secure aggregation mode {mode!r}; use one of {', '.join(MODES)}")
    encoder: FixedPointEncoder
    if isinstance(params, BFVParams):
        encoder = BFVEncoder(params, num_values, max_clients, weight_bits, scale_bits, value_bound, clip)
    else:
        encoder = PackedEncoder(params, num_values, max_clients, weight_bits, scale_bits, value_bound, clip)
    if mode == "modeled":
        return KeyHolder(encoder, workers=workers), Aggregator(encoder, workers=workers)
    rng = RandomSource(seed, stream=_ENCRYPT_STREAM)
    if isinstance(encoder, BFVEncoder):
        bfv_secret, bfv_public = bfv_keygen(encoder)
        return KeyHolder(encoder, bfv_secret, rng, workers), Aggregator(encoder, bfv_public, workers)
    assert isinstance(encoder, PackedEncoder)
    secret, public = she.keygen(encoder.params, seed)
    return (
        KeyHolder(encoder, SHEClient(secret, encoder.layout), rng, workers),
        Aggregator(encoder, SHEServer(public), workers),
    )
