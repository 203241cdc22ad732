"""Random bytes for key generation and encryption: the OS CSPRNG, or a seeded stream for tests."""

from __future__ import annotations

import secrets

import numpy as np

from crypto.errors import CryptoError

__all__ = ["RandomSource"]


class RandomSource:
    """Random bytes from `secrets` (seed=None) or from a seeded PCG64 stream (int seed).

    A seeded source is reproducible and NOT cryptographically secure: use it for simulations
    and tests only. `stream` separates independent streams drawn from the same seed.
    """

    def __init__(self, seed: int | None = None, stream: int = 0) -> None:
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
            raise CryptoError(f"seed must be None (secure) or a non-negative int (reproducible), got {seed!r}")
        self._gen = None if seed is None else np.random.Generator(np.random.PCG64([seed, stream]))

    @property
    def secure(self) -> bool:
        """True when the bytes come from the OS CSPRNG."""
        return self._gen is None

    def bytes(self, n: int) -> bytes:
        """`n` random bytes."""
        return secrets.token_bytes(n) if self._gen is None else self._gen.bytes(n)

    def bits(self, nbits: int) -> int:
        """A uniform random integer in [0, 2^nbits)."""
        raw = int.from_bytes(self.bytes((nbits + 7) // 8), "little")
        return raw & ((1 << nbits) - 1)
