"""BFV (RLWE) encryption for secure aggregation, through TenSEAL (OpenMined's wrapper of SEAL).

Two key arrangements. Shared: clients share one BFV secret key (as they share SHE's key) and
encrypt with it (symmetric-key encryptions: only key holders can make them). Authority
(`bfv_authority_keygen`): a decryption authority holds the secret key; devices hold a context
with the public key only (`BFVEncryptor`), which encrypts but decrypts nothing. Either way the
server holds a TenSEAL context without any key, which is all that adding ciphertexts and
multiplying them by integers needs.

Encoding: each value is a fixed-point integer q = round(v * 2^scale_bits) in one batching slot;
a ciphertext holds n = poly_modulus_degree slots (the last one padded with zeros). The plain
modulus t is the smallest prime t = 1 (mod 2n) above twice the largest admissible weighted
sum A = K * (2^weight_bits - 1) * max_quantized, so every sum decodes exactly as a signed
value in (-t/2, t/2). `BFVEncoder` also refuses, before anything is encrypted, any setting
whose noise could reach the decryption bound (see `noise_bound`).

Ciphertexts travel as TenSEAL's serialized bytes (one `BFVVector` of one SEAL ciphertext each):
that is what pickles to process and Ray workers, what the wire format carries and what the
simulator charges, at the size `BFVParams.ciphertext_bytes` (checked at every encryption).
TenSEAL is imported only when real BFV runs (`pip install tenseal`); modeled BFV needs no TenSEAL.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from crypto.bigint import is_prime
from crypto.encoding import FixedPointEncoder
from crypto.errors import CryptoError, OverflowRiskError, PayloadError
from crypto.params import BFVParams
from crypto.randomness import RandomSource

__all__ = [
    "FRESH_NOISE",
    "BFVEncoder",
    "BFVEncryptor",
    "BFVLayout",
    "BFVPublic",
    "BFVSecret",
    "batching_prime",
    "bfv_authority_keygen",
    "bfv_keygen",
    "fresh_noise",
]

_ERROR_BOUND = 21  # SEAL's error coefficients: centered binomial, |e| <= 21 (clipped normal 6 sigma = 19.2)

FRESH_NOISE = _ERROR_BOUND + 1
"""Bound on the noise of a fresh symmetric-key BFV ciphertext in SEAL: the error polynomial's
coefficients (|e| <= 21) plus the rounding of round(q*m/t) (<= 1/2)."""


def fresh_noise(n: int, public_key: bool) -> int:
    """Bound on a fresh ciphertext's noise at degree n: FRESH_NOISE (symmetric key), or for a
    public-key encryption e1 - e*u + e2*s (u, s ternary): 21 * (2n + 1), plus the rounding."""
    return _ERROR_BOUND * (2 * n + 1) + 1 if public_key else FRESH_NOISE

_MAX_PLAIN_BITS = 60  # SEAL's largest plain modulus


def batching_prime(n: int, above: int) -> int:
    """The smallest prime t = 1 (mod 2n) with t > above (batching needs t = 1 mod 2n)."""
    step = 2 * n
    t = -(-above // step) * step + 1  # the first t = 1 (mod 2n) above `above`
    while not is_prime(t):
        t += step
    return t


@dataclass(frozen=True)
class BFVLayout:
    """How a vector of `num_values` fixed-point values maps onto BFV ciphertexts (public)."""

    num_values: int
    scale_bits: int
    slots_per_ciphertext: int
    plain_modulus: int
    ciphertext_bytes: int

    @property
    def num_ciphertexts(self) -> int:
        return -(-self.num_values // self.slots_per_ciphertext)


@dataclass(frozen=True)
class BFVEncoder(FixedPointEncoder):
    """Fixed-point encoder for BFV (`params`: BFVParams): one value per slot, t sized for the sums.

    Refuses when the plain modulus would exceed SEAL's 60 bits, or when the noise of the
    largest admissible aggregate could reach the decryption bound q / (2t); `public_key`: the
    ciphertexts are public-key encryptions (authority arrangement), whose fresh noise is larger.
    """

    public_key: bool = False
    plain_modulus: int = field(init=False)
    layout: BFVLayout = field(init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        prm = self.params
        if not isinstance(prm, BFVParams):
            raise CryptoError(f"BFVEncoder needs BFVParams, got {type(prm).__name__}")
        t = batching_prime(prm.poly_modulus_degree, 2 * self.slot_limit)
        if t.bit_length() > _MAX_PLAIN_BITS:
            raise OverflowRiskError(
                f"sums of {self.max_clients} clients with weights up to {self.max_weight} reach +-{self.slot_limit}, "
                f"which needs a {t.bit_length()}-bit plain modulus, over SEAL's {_MAX_PLAIN_BITS}; lower scale_bits, "
                "value_bound, weight_bits or max_clients"
            )
        noise = self.noise_bound
        if 2 * t * noise >= prm.q_min:
            raise OverflowRiskError(
                f"BFV parameter set {prm.name!r}: an aggregate of {self.max_clients} clients with weights up to "
                f"{self.max_weight} could carry noise ~2^{noise.bit_length()}, and with a {t.bit_length()}-bit "
                f"plain modulus decryption needs it below q/(2t) ~ 2^{prm.q_min.bit_length() - 1 - t.bit_length()}; "
                "use encryption.params wide, or lower max_clients, weight_bits, scale_bits or value_bound"
            )
        object.__setattr__(self, "plain_modulus", t)
        layout = BFVLayout(self.wire_values, self.scale_bits, prm.slots, t, prm.ciphertext_bytes)
        object.__setattr__(self, "layout", layout)

    @property
    def noise_bound(self) -> int:
        """Largest noise of an admissible aggregate: sum_i w_i |v_i| <= K * max_weight * fresh noise.

        Multiplying a ciphertext by the constant plaintext w scales its noise by w; adding adds
        noises; plaintext sums that wrap mod t add nothing (q/t * t = q = 0 mod q). Decryption
        is exact while the noise stays below q / (2t).
        """
        return self.max_clients * self.max_weight * fresh_noise(self.params.poly_modulus_degree, self.public_key)


def _tenseal() -> Any:
    try:
        import tenseal
    except ImportError:
        raise CryptoError(
            "real BFV encryption needs TenSEAL, which is not installed; install it with `pip install tenseal` "
            "(or `pip install .`), or use encryption.mode modeled (same integers, bytes and device time)"
        ) from None
    return tenseal


def _context(ts: Any, layout: BFVLayout, params: BFVParams, public_key: bool = False) -> Any:
    return ts.context(
        ts.SCHEME_TYPE.BFV,
        poly_modulus_degree=params.poly_modulus_degree,
        plain_modulus=layout.plain_modulus,
        coeff_mod_bit_sizes=list(params.coeff_mod_bit_sizes),
        encryption_type=ts.ENCRYPTION_TYPE.ASYMMETRIC if public_key else ts.ENCRYPTION_TYPE.SYMMETRIC,
        n_threads=1,
    )


def _keyless(context: Any) -> bytes:
    """The context's parameters without any key: what the server may hold."""
    return context.serialize(save_public_key=False, save_secret_key=False, save_galois_keys=False,
                             save_relin_keys=False)


@dataclass(eq=False)
class _ContextHolder:
    """A TenSEAL context and the facts about it; pickles as the context's serialized bytes."""

    params: BFVParams
    layout: BFVLayout
    key_id: bytes
    context: Any = field(repr=False)
    min_chunk: ClassVar[int] = 4  # ciphertexts per worker (~6 ms of encryption) below which splitting does not pay

    def _context_bytes(self) -> bytes:
        raise NotImplementedError

    def __getstate__(self) -> dict[str, Any]:
        return {"params": self.params, "layout": self.layout, "key_id": self.key_id, "context": self._context_bytes()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.params, self.layout, self.key_id = state["params"], state["layout"], state["key_id"]
        self.context = _tenseal().context_from(state["context"], n_threads=1)

    def load(self, blob: bytes) -> Any:
        """A serialized ciphertext as a TenSEAL vector of this context; PayloadError if it is not one."""
        if not isinstance(blob, bytes) or len(blob) != self.params.ciphertext_bytes:
            raise PayloadError(
                f"a BFV ciphertext of parameter set {self.params.name!r} is {self.params.ciphertext_bytes} bytes, "
                f"got {len(blob) if isinstance(blob, bytes) else type(blob).__name__}"
            )
        try:
            vec = _tenseal().bfv_vector_from(self.context, blob)
        except (RuntimeError, ValueError, TypeError) as exc:  # what TenSEAL raises on bytes it cannot parse
            raise PayloadError(f"not a BFV ciphertext of this context: {exc}") from None
        if vec.size() != self.params.slots:
            raise PayloadError(f"a BFV ciphertext holds {vec.size()} slots, this layout {self.params.slots}")
        return vec


def _encrypt(holder: _ContextHolder, values: np.ndarray) -> list[bytes]:
    """Serialized ciphertexts of int64 `values`, n per ciphertext (the last padded with zeros).

    SEAL draws the randomness from its own CSPRNG (BFV has no seeded mode).
    """
    ts, n = _tenseal(), holder.params.slots
    padded = np.zeros(-(-values.size // n) * n, dtype=np.int64)
    padded[: values.size] = values
    out = []
    for start in range(0, padded.size, n):
        blob = ts.bfv_vector(holder.context, padded[start : start + n].tolist()).serialize()
        if len(blob) != holder.params.ciphertext_bytes:
            raise CryptoError(
                f"TenSEAL serialized a ciphertext as {len(blob)} bytes where parameter set "
                f"{holder.params.name!r} expects {holder.params.ciphertext_bytes}: this TenSEAL version frames "
                "ciphertexts differently; update BFVParams.ciphertext_bytes (tests/test_crypto_bfv.py measures it)"
            )
        out.append(blob)
    return out


class BFVPublic(_ContextHolder):
    """The server's half: a TenSEAL context with no key; weighted sums of ciphertexts."""

    def _context_bytes(self) -> bytes:
        return _keyless(self.context)

    @property
    def plain_modulus(self) -> int:
        return self.layout.plain_modulus

    @property
    def public(self) -> BFVPublic:
        """Itself: everything it holds is public."""
        return self

    def weighted_sum(self, bodies: Sequence[Sequence[bytes]], weights: Sequence[int]) -> list[bytes]:
        """Ciphertext by ciphertext, sum_i w_i * bodies[i] (weights are checked ints >= 1)."""
        out = []
        for k in range(len(bodies[0])):
            total = None
            for body, w in zip(bodies, weights, strict=True):
                term = self.load(body[k])
                term.mul_(int(w))
                total = term if total is None else total.add_(term)
            assert total is not None
            out.append(total.serialize())
        return out

    def __repr__(self) -> str:
        return f"BFVPublic(params={self.params.name!r}, key_id={self.key_id.hex()})"


class BFVEncryptor(_ContextHolder):
    """A device's half in the authority arrangement: a context with the public key and no secret
    key. It encrypts; it cannot decrypt anything, its own ciphertexts included."""

    def _context_bytes(self) -> bytes:
        return self.context.serialize(save_public_key=True, save_secret_key=False, save_galois_keys=False,
                                      save_relin_keys=False)

    @property
    def public(self) -> BFVPublic:
        """A keyless copy of the context, to hand the server."""
        return BFVPublic(self.params, self.layout, self.key_id, _tenseal().context_from(_keyless(self.context),
                                                                                       n_threads=1))

    def encrypt(self, values: np.ndarray, rng: RandomSource | None = None) -> list[bytes]:
        """Serialized public-key ciphertexts of int64 `values` (see `_encrypt`)."""
        return _encrypt(self, values)

    def __repr__(self) -> str:
        return f"BFVEncryptor(params={self.params.name!r}, key_id={self.key_id.hex()}, public key only)"


class BFVSecret(_ContextHolder):
    """The key holders' (or the authority's) half: the TenSEAL context with the secret key."""

    def _context_bytes(self) -> bytes:
        return self.context.serialize(save_public_key=False, save_secret_key=True, save_galois_keys=False,
                                      save_relin_keys=False)

    @property
    def public(self) -> BFVPublic:
        """A fresh keyless copy of the context, to hand the server."""
        return BFVPublic(self.params, self.layout, self.key_id, _tenseal().context_from(_keyless(self.context),
                                                                                       n_threads=1))

    def encrypt(self, values: np.ndarray, rng: RandomSource | None = None) -> list[bytes]:
        """Serialized ciphertexts of int64 `values` under the secret key (see `_encrypt`)."""
        return _encrypt(self, values)

    def decrypt(self, blobs: Sequence[bytes]) -> np.ndarray:
        """The signed slot values (int64, n per ciphertext) of serialized ciphertexts."""
        return np.array([v for blob in blobs for v in self.load(blob).decrypt()], dtype=np.int64)

    def __repr__(self) -> str:
        return f"BFVSecret(params={self.params.name!r}, key_id={self.key_id.hex()}, secret=<hidden>)"


def bfv_keygen(encoder: BFVEncoder) -> tuple[BFVSecret, BFVPublic]:
    """A fresh BFV secret key (SEAL's CSPRNG) for `encoder`'s layout, and its keyless public half.

    The key id is 16 random bytes naming the key (nothing public derives from a symmetric key).
    """
    ts = _tenseal()
    secret = BFVSecret(encoder.params, encoder.layout, secrets.token_bytes(16), _context(ts, encoder.layout,
                                                                                       encoder.params))
    return secret, secret.public


def bfv_authority_keygen(encoder: BFVEncoder) -> tuple[BFVSecret, BFVEncryptor, BFVPublic]:
    """A fresh BFV key pair for the authority arrangement (`encoder.public_key` must be set): the
    authority's secret context, the devices' public-key-only context and the server's keyless one."""
    if not encoder.public_key:
        raise CryptoError("the authority arrangement needs a BFVEncoder built with public_key=True (its noise bound)")
    ts = _tenseal()
    key_id = secrets.token_bytes(16)
    context = _context(ts, encoder.layout, encoder.params, public_key=True)
    secret = BFVSecret(encoder.params, encoder.layout, key_id, context)
    device_bytes = context.serialize(save_public_key=True, save_secret_key=False, save_galois_keys=False,
                                     save_relin_keys=False)
    encryptor = BFVEncryptor(encoder.params, encoder.layout, key_id, ts.context_from(device_bytes, n_threads=1))
    return secret, encryptor, secret.public
