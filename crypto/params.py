"""SHE parameter sets: the paper's defaults and a documented high-throughput set."""

from __future__ import annotations

from dataclasses import dataclass

from crypto.errors import CryptoError

__all__ = ["HIGH_THROUGHPUT_PARAMS", "PAPER_PARAMS", "PARAM_SETS", "SHEParams"]

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
"""The parameter sets by the names scenarios use (`encryption.params`)."""
