"""Symmetric Homomorphic Encryption (SHE), the paper's scheme.

Enc(m) = (r*L + m) * (1 + r1*p) mod N, with r a random r_bits-bit integer (top bit set, so
r >= 1) and r1 uniform in [0, q). Dec(c) = (c mod p) mod L, read as signed. Ciphertexts add,
and multiply by non-negative plaintext integers; the result decrypts correctly while the
accumulated r*L + m stays below p and the plaintext below L/2 in magnitude. The secret key
(p, L) and the public parameter N are separate types: server-side functions take only
`PublicParams` and ciphertexts.

Ciphertexts are Python ints: the server only multiplies them by small weights, adds and reduces
mod N once, which ints do as fast as gmpy2, and ints pickle ~8x faster (what a process pool
sends). Encryption and decryption, where the 2048-bit products and reductions are, use gmpy2
where it is installed and Python ints otherwise (`crypto.bigint`: same results, slower).
"""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from crypto.bigint import mpz, next_prime
from crypto.errors import CryptoError, OverflowRiskError
from crypto.params import SHEParams
from crypto.randomness import RandomSource

__all__ = [
    "PublicParams",
    "SecretKey",
    "add",
    "decrypt",
    "decrypt_many",
    "encrypt",
    "encrypt_many",
    "keygen",
    "mul_plain",
    "weighted_sum",
]

_KEYGEN_STREAM = 0


@dataclass(frozen=True)
class PublicParams:
    """The public half: the parameter set and the modulus N = p*q."""

    params: SHEParams
    n: int
    key_id: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.n.bit_length() != 2 * self.params.k0:
            raise CryptoError(f"N has {self.n.bit_length()} bits, expected 2*k0 = {2 * self.params.k0}")
        tag = f"{self.params.k0}:{self.params.k2}:{self.params.r_bits}:".encode() + self.n.to_bytes(
            self.params.ciphertext_bytes, "big"
        )
        object.__setattr__(self, "key_id", hashlib.sha256(b"ppafl-she-v1:" + tag).digest()[:16])

    def __repr__(self) -> str:
        return f"PublicParams(params={self.params.name!r}, key_id={self.key_id.hex()})"


@dataclass(frozen=True, repr=False)
class SecretKey:
    """The secret key (p, L), held by the clients only; `public` is its public half.

    q = N / p follows from p and N; encryption draws its randomness below q.
    """

    p: int  # an mpz where gmpy2 is installed
    L: int
    public: PublicParams
    q: int = field(init=False)

    def __post_init__(self) -> None:
        q, rem = divmod(self.public.n, self.p)
        if rem != 0:
            raise CryptoError("secret key p does not divide the public N: the key halves do not belong together")
        object.__setattr__(self, "q", q)

    @property
    def params(self) -> SHEParams:
        return self.public.params

    def __repr__(self) -> str:
        return f"SecretKey(params={self.params.name!r}, key_id={self.public.key_id.hex()}, p=<hidden>, L=<hidden>)"


def _random_prime(bits: int, rng: RandomSource) -> int:
    """A random prime of exactly `bits` bits with its two top bits set."""
    top = mpz(3) << (bits - 2)
    while True:
        prime = next_prime(mpz(rng.bits(bits)) | top | 1)
        if prime.bit_length() == bits:
            return prime


def keygen(params: SHEParams, seed: int | None = None) -> tuple[SecretKey, PublicParams]:
    """Draw p, q (k0 bits) and L (k2 bits). seed=None uses the OS CSPRNG; an int seed is
    reproducible and NOT secure (simulations and tests only)."""
    rng = RandomSource(seed, stream=_KEYGEN_STREAM)
    p = _random_prime(params.k0, rng)
    q = p
    while q == p:
        q = _random_prime(params.k0, rng)
    L = p
    while L in (p, q):
        L = _random_prime(params.k2, rng)
    public = PublicParams(params, int(p * q))
    return SecretKey(p, L, public), public


def _check_plaintexts(sk: SecretKey, plaintexts: Sequence[int]) -> None:
    half = sk.L // 2
    low, high = min(plaintexts), max(plaintexts)
    if low < -half or high > half:
        bad = low if low < -half else high
        raise OverflowRiskError(
            f"plaintext {int(bad)} exceeds L/2 (~2^{half.bit_length()}) in magnitude and would decrypt wrong; "
            "encode fewer bits per plaintext"
        )


def _random_multipliers(rng: RandomSource, count: int, params: SHEParams) -> tuple[bytes, int]:
    """`count` little-endian r values (r_bits bits, top bit set) as one block, with their width in bytes."""
    width = (params.r_bits + 7) // 8
    rows = np.frombuffer(rng.bytes(count * width), dtype=np.uint8).reshape(count, width).copy()
    top = params.r_bits - 8 * (width - 1)  # bits used in r's top byte, 1..8
    rows[:, -1] &= (1 << top) - 1
    rows[:, -1] |= 1 << (top - 1)
    return rows.tobytes(), width


def encrypt_many(sk: SecretKey, plaintexts: Sequence[int], rng: RandomSource) -> list[int]:
    """Encrypt signed integers with |m| <= L/2, one fresh (r, r1) each.

    With x = r*L + m (0 < x < p) and t uniform in [0, q), the ciphertext is c = x + p*t: the
    paper's (x)(1 + r1*p) mod N for r1 = t * x^-1 mod q (CRT: c = x mod p, c = x(1 + r1*p)
    mod q), so r1 is uniform mod q. It skips the paper's product x*r1 and reduction mod q.
    """
    count = len(plaintexts)
    if count == 0:
        return []
    _check_plaintexts(sk, plaintexts)
    rs, width = _random_multipliers(rng, count, sk.params)
    ts = rng.integers_below(sk.q, count)
    p, L = sk.p, sk.L
    from_bytes = int.from_bytes
    xs = [from_bytes(rs[i : i + width], "little") * L + m for i, m in zip(range(0, count * width, width), plaintexts)]
    return [int(x + p * t) for x, t in zip(xs, ts)]


def encrypt(sk: SecretKey, m: int, rng: RandomSource | None = None) -> int:
    """Enc(m) = (r*L + m)(1 + r1*p) mod N; rng defaults to the OS CSPRNG."""
    return encrypt_many(sk, [operator.index(m)], rng or RandomSource())[0]


def _check_ciphertexts(public: PublicParams, ciphertexts: Sequence[int]) -> None:
    if min(ciphertexts) < 0 or max(ciphertexts) >= public.n:
        raise CryptoError("a ciphertext lies outside [0, N): it was not made under this public parameter")


def decrypt_many(sk: SecretKey, ciphertexts: Sequence[int]) -> list[int]:
    """Dec(c) = (c mod p) mod L, read as signed: m if m <= L/2 else m - L."""
    if len(ciphertexts) == 0:
        return []
    _check_ciphertexts(sk.public, ciphertexts)
    p, L, half = sk.p, sk.L, sk.L // 2
    residues = [(c % p) % L for c in ciphertexts]
    return [m - L if m > half else m for m in residues]


def decrypt(sk: SecretKey, c: int) -> int:
    """Decrypt one ciphertext to a signed int."""
    return int(decrypt_many(sk, [operator.index(c)])[0])


def add(public: PublicParams, c1: int, c2: int) -> int:
    """Enc(m1) + Enc(m2) -> Enc(m1 + m2)."""
    return (operator.index(c1) + operator.index(c2)) % public.n


def _check_scalar(k: int) -> int:
    k = operator.index(k)
    if k < 0:
        raise CryptoError(f"plaintext multiplier {k} is negative; SHE multiplies only by integers >= 0")
    return k


def mul_plain(public: PublicParams, c: int, k: int) -> int:
    """k * Enc(m) -> Enc(k*m) for an integer k >= 0."""
    return (operator.index(c) * _check_scalar(k)) % public.n


def weighted_sum(public: PublicParams, vectors: Sequence[Sequence[int]], weights: Sequence[int]) -> list[int]:
    """Element-wise sum_i w_i * vectors[i], reduced mod N once per element."""
    if len(vectors) == 0 or len(vectors) != len(weights):
        raise CryptoError(
            f"weighted_sum needs as many weights as vectors (>= 1), got {len(vectors)} and {len(weights)}"
        )
    if len({len(v) for v in vectors}) != 1:
        raise CryptoError(f"ciphertext vectors differ in length: {sorted({len(v) for v in vectors})}")
    scalars = [_check_scalar(w) for w in weights]
    acc = [c * scalars[0] for c in vectors[0]]
    for vec, w in zip(vectors[1:], scalars[1:]):  # client by client: sequential memory access
        acc = [a + c * w for a, c in zip(acc, vec)]
    n = public.n
    return [a % n for a in acc]
