"""Random bytes for key generation and encryption: the OS CSPRNG, or a seeded stream for tests.

A seeded stream must never be drawn by two copies: two SHE encryptions with the same
randomness give c1 - c2 = m1 - m2. A copy made by pickling (a process or Ray worker, an object
store) would replay the stream, so a seeded source refuses to be pickled or copied. The one
exception is a source made by `spawn` (a fresh stream seeded from its parent's draws, for one
worker of a split operation): it may be pickled once, handing it over; a second pickling of it
is refused. A CSPRNG source (seed=None) pickles freely: each copy draws from its own OS CSPRNG.
"""

from __future__ import annotations

import secrets

import numpy as np

from crypto.errors import CryptoError

__all__ = ["RandomSource"]

_CHUNK_ROWS = 1 << 16  # draws screened per numpy pass in `integers_below`: bounds temporary memory


class RandomSource:
    """Random bytes from `secrets` (seed=None) or from a seeded PCG64 stream (int seed).

    A seeded source is reproducible and NOT cryptographically secure: use it for simulations
    and tests only. `stream` separates independent streams drawn from the same seed.
    """

    def __init__(self, seed: int | None = None, stream: int = 0) -> None:
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
            raise CryptoError(f"seed must be None (secure) or a non-negative int (reproducible), got {seed!r}")
        self._gen = None if seed is None else np.random.Generator(np.random.PCG64([seed, stream]))
        self._handovers = 0  # times a seeded source may still be pickled (spawned sources: once)

    def __getstate__(self) -> dict:
        if self._gen is not None:
            if self._handovers < 1:
                raise CryptoError(
                    "a seeded RandomSource cannot be pickled or copied: two copies would draw the same stream "
                    "(for SHE, c1 - c2 = m1 - m2). Use seed=None (the OS CSPRNG) for anything sent to another "
                    "process, or spawn() one source per worker"
                )
            self._handovers -= 1
        return {"_gen": self._gen, "_handovers": 0}

    @property
    def secure(self) -> bool:
        """True when the bytes come from the OS CSPRNG."""
        return self._gen is None

    def spawn(self, count: int) -> list[RandomSource]:
        """`count` independent sources: fresh CSPRNG ones, or (seeded) streams seeded by draws from this one."""
        if self._gen is None:
            return [RandomSource() for _ in range(count)]
        children = [RandomSource(int(s)) for s in self._gen.integers(0, 2**63, size=count)]
        for child in children:
            child._handovers = 1
        return children

    def bytes(self, n: int) -> bytes:
        """`n` random bytes."""
        return secrets.token_bytes(n) if self._gen is None else self._gen.bytes(n)

    def bits(self, nbits: int) -> int:
        """A uniform random integer in [0, 2^nbits)."""
        raw = int.from_bytes(self.bytes((nbits + 7) // 8), "little")
        return raw & ((1 << nbits) - 1)

    def integers_below(self, bound: int, count: int) -> list[int]:
        """`count` integers uniform in [0, bound), by rejection: draws of bound's bit length
        that are not below `bound` are discarded (compared exactly)."""
        if bound < 1 or count < 0:
            raise CryptoError(f"integers_below needs bound >= 1 and count >= 0, got {bound} and {count}")
        nbits = int(bound).bit_length()
        width = max(8, (nbits + 7) // 8)  # big-endian rows; the leading 8 bytes read as one uint64
        lead = 8 * width - nbits  # leading bits that must be zero
        limit = int(bound).to_bytes(width, "big")
        limit_head = int.from_bytes(limit[:8], "big")
        out: list[int] = []
        while len(out) < count:  # a draw is kept with probability bound / 2^nbits >= 1/2
            need = min(count - len(out), _CHUNK_ROWS)
            draws = need + need // 2 + 8
            rows = np.frombuffer(self.bytes(draws * width), dtype=np.uint8).reshape(draws, width).copy()
            rows[:, : lead // 8] = 0
            if lead % 8:
                rows[:, lead // 8] &= 0xFF >> (lead % 8)
            head = rows[:, :8].copy().view(">u8").ravel()
            below = head < limit_head
            for i in np.flatnonzero(head == limit_head):  # the leading 64 bits tie: compare all bytes
                below[i] = rows[i].tobytes() < limit
            kept = rows[below][:need].tobytes()
            out += [int.from_bytes(kept[i : i + width], "big") for i in range(0, len(kept), width)]
        return out
