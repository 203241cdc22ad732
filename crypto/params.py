"""Parameter sets of the two schemes: SHE (the paper's, and a high-throughput set) and BFV."""

from __future__ import annotations

from dataclasses import dataclass

from crypto.errors import CryptoError

__all__ = [
    "BFV_COMPACT",
    "BFV_PARAM_SETS",
    "BFV_WIDE",
    "DEFAULT_PARAMS",
    "HE_STANDARD_128",
    "HIGH_THROUGHPUT_PARAMS",
    "PAPER_PARAMS",
    "PARAM_SETS",
    "SCHEME_PARAM_SETS",
    "BFVParams",
    "SHEParams",
]

_MIN_K0 = 64


@dataclass(frozen=True)
class SHEParams:
    """Key sizes of the SHE scheme, in bits.

    k0: size of each secret prime p and q (N = p*q has 2*k0 bits).
    k1: the paper's message size: a single unpacked plaintext has at most k1 bits. Packing
        replaces it by the exact bounds checked in `PackedEncoder` (|plaintext| < L/2 and
        r*L + m < p), so it is recorded here, not used to encode.
    k2: size of the secret prime L (the plaintext modulus).
    r_bits: size of the random multiplier r of L (the paper uses r_bits = k2).
    Primes are drawn with their two top bits set, so p >= 3*2^(k0-2) and L >= 3*2^(k2-2).
    """

    name: str
    k0: int
    k1: int
    k2: int
    r_bits: int

    def __post_init__(self) -> None:
        for field in ("k0", "k1", "k2", "r_bits"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise CryptoError(f"SHEParams.{field} must be a positive int, got {value!r}")
        if self.k0 < _MIN_K0:
            raise CryptoError(f"SHEParams.k0={self.k0} is too small; use k0 >= {_MIN_K0} (the paper uses 2048)")
        if self.k2 < 8 or self.k1 >= self.k2:
            raise CryptoError(
                f"SHEParams needs 8 <= k2 and k1 < k2 (messages must fit below L), got k1={self.k1}, k2={self.k2}"
            )
        if self.r_bits + self.k2 >= self.k0 - 1:
            raise CryptoError(
                f"SHEParams r_bits + k2 = {self.r_bits + self.k2} must stay below k0 - 1 = {self.k0 - 1}, "
                "or even one ciphertext r*L + m could exceed p; raise k0 or lower k2/r_bits"
            )

    @property
    def ciphertext_bytes(self) -> int:
        """Bytes of one ciphertext: N has exactly 2*k0 bits."""
        return (2 * self.k0 + 7) // 8

    @property
    def p_min(self) -> int:
        """The smallest p keygen can draw (two top bits set)."""
        return 3 << (self.k0 - 2)

    @property
    def l_min(self) -> int:
        """The smallest L keygen can draw (two top bits set)."""
        return 3 << (self.k2 - 2)

    @property
    def l_max(self) -> int:
        """The largest L keygen can draw."""
        return (1 << self.k2) - 1

    @property
    def r_max(self) -> int:
        """The largest random multiplier r."""
        return (1 << self.r_bits) - 1


PAPER_PARAMS = SHEParams("paper", k0=2048, k1=20, k2=160, r_bits=160)
"""The paper's parameters: k0=2048, k1=20, k2=160 (r and L both 160 bits)."""

HIGH_THROUGHPUT_PARAMS = SHEParams("high_throughput", k0=2048, k1=20, k2=1800, r_bits=160)
"""Same p, q, N and r as the paper, but an 1800-bit L: ~50 packed slots per ciphertext.
This departs from the paper's parameters (its analysis assumes k2 = 160)."""

PARAM_SETS = {p.name: p for p in (PAPER_PARAMS, HIGH_THROUGHPUT_PARAMS)}
"""The SHE parameter sets by the names scenarios use (`encryption.params` with scheme she)."""

HE_STANDARD_128 = {1024: 27, 2048: 54, 4096: 109, 8192: 218, 16384: 438, 32768: 881}
"""Largest total coefficient-modulus bits for 128-bit classical security with a ternary secret,
by polynomial modulus degree: the Homomorphic Encryption Standard (Albrecht et al., 2018,
table 1), which SEAL enforces as `sec_level_type.tc128`."""

_SEAL_MAX_PRIME_BITS = 60


@dataclass(frozen=True)
class BFVParams:
    """A BFV parameter set (SEAL through TenSEAL), 128-bit secure by the HE standard's table.

    poly_modulus_degree: n, a power of two; a ciphertext holds n values (batching slots).
    coeff_mod_bit_sizes: the coefficient modulus primes' bit sizes. SEAL keeps the last prime
        for key switching only, so ciphertexts live modulo the others (`data_bits` in all).
    ciphertext_bytes: TenSEAL's serialized size of one ciphertext of this set (a fresh one and a
        weighted sum alike; checked against TenSEAL by tests and at every encryption).
    The plain modulus is chosen per encoder (`crypto.bfv.BFVEncoder`): the smallest prime
    t = 1 (mod 2n) that holds the largest weighted sum.
    """

    name: str
    poly_modulus_degree: int
    coeff_mod_bit_sizes: tuple[int, ...]
    ciphertext_bytes: int

    def __post_init__(self) -> None:
        n, bits = self.poly_modulus_degree, self.coeff_mod_bit_sizes
        if n not in HE_STANDARD_128:
            raise CryptoError(f"BFVParams.poly_modulus_degree must be one of {sorted(HE_STANDARD_128)}, got {n!r}")
        if len(bits) < 2 or any(not isinstance(b, int) or not 20 <= b <= _SEAL_MAX_PRIME_BITS for b in bits):
            raise CryptoError(
                f"BFVParams.coeff_mod_bit_sizes must be at least two primes of 20..{_SEAL_MAX_PRIME_BITS} bits "
                f"(the last one is SEAL's key-switching prime), got {bits!r}"
            )
        if sum(bits) > HE_STANDARD_128[n]:
            raise CryptoError(
                f"BFVParams {self.name!r}: a {sum(bits)}-bit coefficient modulus at degree {n} is below 128-bit "
                f"security (the HE standard allows at most {HE_STANDARD_128[n]} bits); use fewer or smaller primes "
                "or a larger degree"
            )

    @property
    def slots(self) -> int:
        """Values per ciphertext."""
        return self.poly_modulus_degree

    @property
    def data_bits(self) -> int:
        """Bits of the modulus q that ciphertexts live in (all primes but the last)."""
        return sum(self.coeff_mod_bit_sizes[:-1])

    @property
    def q_min(self) -> int:
        """A lower bound of q: each b-bit prime is at least 2^(b-1)."""
        return 1 << sum(b - 1 for b in self.coeff_mod_bit_sizes[:-1])

    @property
    def security_bits(self) -> int:
        """Classical security level by the HE standard's table (checked at construction)."""
        return 128


BFV_COMPACT = BFVParams("compact", 8192, (60, 60), ciphertext_bytes=131208)
"""n = 8192, ciphertexts modulo one 60-bit prime: 16 bytes per value; sums of up to ~400
clients at the default encoding (8-bit weights, 2^16 scale, |value| <= 8)."""

BFV_WIDE = BFVParams("wide", 8192, (60, 60, 60), ciphertext_bytes=262283)
"""n = 8192, ciphertexts modulo two 60-bit primes: 32 bytes per value; room for plain moduli
up to SEAL's 60 bits (many more clients, larger weights or scales)."""

BFV_PARAM_SETS = {p.name: p for p in (BFV_COMPACT, BFV_WIDE)}
"""The BFV parameter sets by the names scenarios use (`encryption.params` with scheme bfv)."""

SCHEME_PARAM_SETS: dict[str, dict[str, SHEParams | BFVParams]] = {"she": dict(PARAM_SETS), "bfv": dict(BFV_PARAM_SETS)}
"""Parameter sets by scheme, then by name."""

DEFAULT_PARAMS = {"she": (HIGH_THROUGHPUT_PARAMS.name,), "bfv": (BFV_COMPACT.name, BFV_WIDE.name)}
"""The parameter sets tried, cheapest first, when a scenario names none: the first that holds the
run's largest aggregate is used (SHE's paper set is never chosen for you: it is the paper's cost
model, slower and larger)."""
