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

Integrity (`crypto.integrity`): every vector carries its origin (device id, nonce) and, after its
values, tag digits keyed by a secret the server does not hold; the server's aggregate carries the
claims (device, nonce, weight) of its contributions. The key holders refuse, with a `CryptoError`
subclass, any aggregate of fewer than `min_contributors` distinct devices, whose claims do not add
up, that repeats an accepted one, or whose decrypted values fail the tags.
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
from crypto.integrity import (
    ANONYMOUS,
    Claim,
    DeviceTagger,
    IntegrityError,
    IntegrityKey,
    IntegrityVerifier,
    Origin,
    TagLayout,
)
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
_UNIDENTIFIED = Origin(ANONYMOUS, 0)
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


def _to_bytes(
    kind: int, key_id: bytes, layout: Layout, body: Body, weight_sum: int, count: int,
    origin: Origin | None = None, claims: Sequence[Claim] = (),
) -> bytes:
    if isinstance(body, np.ndarray):
        raise PayloadError("a modeled payload has no ciphertexts to serialize; its `nbytes` is the size it models")
    return encode_payload(kind, key_id, layout, body, weight_sum, count, origin, claims)


@dataclass(frozen=True, eq=False)
class EncryptedVector:
    """One client's encrypted update and its origin (device id, nonce: public, bound by the tags).
    `nbytes` is what the uplink carries (same in both modes)."""

    layout: Layout
    key_id: bytes
    body: Body
    origin: Origin = _UNIDENTIFIED

    @property
    def modeled(self) -> bool:
        return isinstance(self.body, np.ndarray)

    @property
    def nbytes(self) -> int:
        return payload_nbytes(self.layout)

    def to_bytes(self) -> bytes:
        """The checked wire format (real mode only)."""
        return _to_bytes(KIND_VECTOR, self.key_id, self.layout, self.body, 0, 1, self.origin)

    @classmethod
    def from_bytes(cls, data: bytes, public: PublicKey) -> EncryptedVector:
        """Parse a payload; truncated, tampered or wrong-key data raise `PayloadError`."""
        payload = decode_payload(data, public, KIND_VECTOR)
        if (payload.weight_sum, payload.count) != (0, 1) or payload.origin is None:
            raise PayloadError("encrypted vector header is corrupted (weight sum/count of a vector must be 0/1)")
        return cls(payload.layout, public.key_id, payload.ciphertexts, payload.origin)


@dataclass(frozen=True, eq=False)
class EncryptedAggregate:
    """A weighted sum of `count` encrypted vectors whose integer weights sum to `weight_sum`, with
    the claims (device, nonce, weight) of its contributions for the verifier."""

    layout: Layout
    key_id: bytes
    body: Body
    weight_sum: int
    count: int
    claims: tuple[Claim, ...] = ()

    @property
    def modeled(self) -> bool:
        return isinstance(self.body, np.ndarray)

    @property
    def nbytes(self) -> int:
        return payload_nbytes(self.layout, len(self.claims))

    def to_bytes(self) -> bytes:
        """The checked wire format (real mode only)."""
        return _to_bytes(
            KIND_AGGREGATE, self.key_id, self.layout, self.body, self.weight_sum, self.count, None, self.claims
        )

    @classmethod
    def from_bytes(cls, data: bytes, public: PublicKey) -> EncryptedAggregate:
        """Parse a payload; truncated, tampered or wrong-key data raise `PayloadError`."""
        p = decode_payload(data, public, KIND_AGGREGATE)
        return cls(p.layout, public.key_id, p.ciphertexts, p.weight_sum, p.count, p.claims)


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


class UpdateEncryptor(_Split):
    """The device side of encryption: quantize an update, append its integrity tags, encrypt.

    `cipher` is the scheme's encrypting side (None: modeled, the integers stay in the clear);
    `integrity` the device's tag material (None: no tags, for encoders built without them);
    `workers` > 1 splits large encryptions by ciphertext over worker processes (see `_Split`).
    """

    def __init__(
        self,
        encoder: FixedPointEncoder,
        cipher: Any = None,
        rng: RandomSource | None = None,
        workers: int = 1,
        integrity: IntegrityKey | DeviceTagger | None = None,
    ) -> None:
        expected = 0 if integrity is None else TagLayout.for_bound(encoder.max_quantized).values
        if encoder.tag_values != expected:
            raise CryptoError(
                f"encoder holds {encoder.tag_values} tag values, the integrity material needs {expected}: "
                "build the encoder with tag_values=TagLayout.for_bound(max_quantized).values"
            )
        self._encoder = encoder
        self._cipher = cipher
        self._rng = rng or RandomSource()
        self._integrity = integrity
        self._tag_layout = None if integrity is None else TagLayout.for_bound(encoder.max_quantized)
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
        """The fixed-point integers of an update (int64), as encrypted (without the tag digits)."""
        return self._encoder.quantize(update)

    def _origin(self, device: int | None) -> Origin:
        if isinstance(self._integrity, DeviceTagger):
            if device not in (None, self._integrity.device):
                raise CryptoError(f"this device's material belongs to device {self._integrity.device}, not {device}")
            device = self._integrity.device
        if device is None:
            device = ANONYMOUS
        if not isinstance(device, int) or isinstance(device, bool) or not 0 <= device <= ANONYMOUS:
            raise CryptoError(f"device id must be an int in [0, 2^64 - 1], got {device!r}")
        return Origin(device, self._rng.bits(64))

    def _wire_values(self, q: np.ndarray, origin: Origin) -> np.ndarray:
        """The values to encrypt: the update's, then its tag digits."""
        if self._integrity is None:
            return q
        assert self._tag_layout is not None
        if isinstance(self._integrity, DeviceTagger):
            tags = self._integrity.tags(q, origin.nonce)
        else:
            tags = self._integrity.tags(q, origin.device, origin.nonce)
        return np.concatenate([q, self._tag_layout.digits(tags)])

    def encrypt(self, update: Any, device: int | None = None) -> EncryptedVector:
        """Encrypt a flat vector or state_dict from `device` (None: unidentified; each such update then
        counts as one contributor); NaN/inf or values beyond value_bound are refused."""
        q = self._encoder.quantize(update)
        origin = self._origin(device)
        values = self._wire_values(q, origin)
        layout = self._encoder.layout
        cipher = self._cipher
        if cipher is None:
            values.flags.writeable = False
            return EncryptedVector(layout, _MODELED_KEY_ID, values, origin)
        per = layout.slots_per_ciphertext
        ranges = split(layout.num_ciphertexts, self.workers, cipher.min_chunk)
        rngs = [self._rng] if len(ranges) == 1 else self._rng.spawn(len(ranges))
        args = [(values[a * per : b * per], rng) for (a, b), rng in zip(ranges, rngs)]
        parts = run_split(self._pool, cipher.encrypt, args)
        return EncryptedVector(layout, cipher.key_id, tuple(c for part in parts for c in part), origin)


class KeyHolder(UpdateEncryptor):
    """The clients' half under a shared key: encrypts updates, verifies and decrypts aggregates.

    `cipher` is the scheme's secret-key side (None: modeled); `integrity` the shared integrity key
    (tags and verification); `min_contributors` the fewest distinct devices an aggregate may hold
    (refusals are counted in `verifier`); `workers` > 1 splits large encryptions and decryptions.
    """

    def __init__(
        self,
        encoder: FixedPointEncoder,
        cipher: ClientCipher | None = None,
        rng: RandomSource | None = None,
        workers: int = 1,
        integrity: IntegrityKey | None = None,
        min_contributors: int = 1,
    ) -> None:
        super().__init__(encoder, cipher, rng, workers, integrity)
        self.verifier = None if integrity is None else IntegrityVerifier(
            integrity, TagLayout.for_bound(encoder.max_quantized), min_contributors
        )

    def decrypt_sum(self, aggregate: EncryptedAggregate) -> np.ndarray:
        """The exact weighted sums sum_i w_i q_i per value (int64), after every check."""
        return open_aggregate(aggregate, self._encoder, self.key_id, self._cipher, self.verifier, self._pool,
                              self.workers)

    def decrypt_average(self, aggregate: EncryptedAggregate) -> np.ndarray:
        """The weighted average sum_i w_i q_i / sum_i w_i / 2^scale_bits (float64)."""
        totals = self.decrypt_sum(aggregate)
        return totals.astype(np.float64) / aggregate.weight_sum / 2.0**self._encoder.scale_bits


def open_aggregate(
    aggregate: EncryptedAggregate,
    encoder: FixedPointEncoder,
    key_id: bytes,
    cipher: ClientCipher | None,
    verifier: IntegrityVerifier | None,
    pool: WorkerPool | None = None,
    workers: int = 1,
) -> np.ndarray:
    """Check and decrypt an aggregate: key and layout, the encoder's bounds, the claims (minimum
    distinct devices, weight sum and count, replays), the decrypted range and the integrity tags.
    Returns the update values' exact weighted sums (int64); any failure is a `CryptoError`."""
    _check_payload(aggregate, encoder, key_id)
    if not 1 <= aggregate.count <= encoder.max_clients or not aggregate.count <= aggregate.weight_sum <= (
        aggregate.count * encoder.max_weight
    ):
        raise OverflowRiskError(
            f"aggregate of {aggregate.count} clients with weight sum {aggregate.weight_sum} is outside what the "
            f"encoder was built for (<= {encoder.max_clients} clients, weights <= {encoder.max_weight})"
        )
    if verifier is not None:
        verifier.check_claims(aggregate.claims, aggregate.weight_sum, aggregate.count)
    body = aggregate.body
    if cipher is None or isinstance(body, np.ndarray):
        assert cipher is None and isinstance(body, np.ndarray)  # the key id check keeps modes apart
        totals = body.copy()
    else:
        ranges = split(len(body), workers, cipher.min_chunk)
        try:
            parts = run_split(pool, cipher.decrypt, [(body[a:b],) for a, b in ranges])
            totals = trim_padding(np.concatenate(parts), encoder.wire_values)
        except CryptoError as exc:
            if verifier is not None:
                verifier.refused_tampered += 1
            raise IntegrityError(f"aggregate refused: {exc}") from None
    if totals.size and int(np.abs(totals).max()) > aggregate.weight_sum * encoder.max_quantized:
        if verifier is not None:
            verifier.refused_tampered += 1
        raise IntegrityError(
            "decrypted aggregate exceeds what its weight sum allows: wrong key, corrupted ciphertext, or a "
            "weight sum that does not match the ciphertexts"
        )
    values = totals[: encoder.num_values]
    if verifier is not None:
        verifier.verify(values, totals[encoder.num_values :], aggregate.claims)
    return values


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
            total = np.zeros(self._encoder.wire_values, dtype=np.int64)
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
        claims = tuple(Claim(vec.origin.device, vec.origin.nonce, w) for vec, w in zip(vectors, ints))
        return EncryptedAggregate(layout, self.key_id, body, sum(ints), len(ints), claims)


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
    min_contributors: int = 1,
) -> tuple[KeyHolder, Aggregator]:
    """Both halves of shared-key secure aggregation for SHE (`SHEParams`) or BFV (`BFVParams`).

    seed=None: secure keys and randomness; an int seed: reproducible SHE keys, encryption
    randomness and integrity key, NOT secure (simulations and tests). BFV keys and noise always
    come from SEAL's CSPRNG (decryption is exact, so results are reproducible all the same).
    Every update carries integrity tags; `min_contributors` (1 here for compatibility; the
    scenario default is `crypto.integrity.DEFAULT_MIN_CONTRIBUTORS`) is the fewest distinct
    devices the key holders decrypt.
    """
    if mode not in MODES:
        raise CryptoError(f"unknown secure aggregation mode {mode!r}; use one of {', '.join(MODES)}")
    encoder = build_encoder(params, num_values, max_clients, weight_bits, scale_bits, value_bound, clip)
    integrity = IntegrityKey.generate(None if seed is None else seed.to_bytes(8, "big"))
    rng = RandomSource(seed, stream=_ENCRYPT_STREAM)
    if mode == "modeled":
        return (
            KeyHolder(encoder, None, rng, workers, integrity, min_contributors),
            Aggregator(encoder, workers=workers),
        )
    if isinstance(encoder, BFVEncoder):
        bfv_secret, bfv_public = bfv_keygen(encoder)
        return (
            KeyHolder(encoder, bfv_secret, rng, workers, integrity, min_contributors),
            Aggregator(encoder, bfv_public, workers),
        )
    assert isinstance(encoder, PackedEncoder)
    secret, public = she.keygen(encoder.params, seed)
    return (
        KeyHolder(encoder, SHEClient(secret, encoder.layout), rng, workers, integrity, min_contributors),
        Aggregator(encoder, SHEServer(public), workers),
    )


def build_encoder(
    params: SHEParams | BFVParams,
    num_values: int,
    max_clients: int,
    weight_bits: int = 8,
    scale_bits: int = 16,
    value_bound: float = 8.0,
    clip: bool = False,
    public_key: bool = False,
) -> FixedPointEncoder:
    """The scheme's encoder for these sums, with room for the integrity tags after the values
    (`public_key`: BFV ciphertexts made with a public key, whose fresh noise is larger)."""
    probe = FixedPointEncoder(params, num_values, max_clients, weight_bits, scale_bits, value_bound, clip)
    tags = TagLayout.for_bound(probe.max_quantized).values
    if isinstance(params, BFVParams):
        return BFVEncoder(params, num_values, max_clients, weight_bits, scale_bits, value_bound, clip, tags,
                          public_key)
    return PackedEncoder(params, num_values, max_clients, weight_bits, scale_bits, value_bound, clip, tags)
