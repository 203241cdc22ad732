"""Random streams of the devices: counter-based, so a device's stream costs nothing to create.

`CounterStream(seed)` is SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom
number generators", OOPSLA 2014; the generator that seeds xoshiro): draw k is a strong
64-bit mix of seed + k x the golden gamma. It has no state but a counter, so creating one
is as cheap as creating an integer (a numpy Generator takes ~10 us and ~0.7 KB, which a
fleet of a million devices would pay at every device it touches), and what one device
draws never depends on another's. `stream_seed(key, i)` derives device i's seed from a
run's key.

The models accept any object with this small part of numpy's `Generator` API
(`RandomStream`), so a `numpy.random.Generator` works too.
"""

from __future__ import annotations

import math
from typing import Protocol

__all__ = ["CounterStream", "RandomStream", "stream_seed"]

_MASK = (1 << 64) - 1
_GAMMA = 0x9E3779B97F4A7C15  # 2^64 / golden ratio, odd
_M1, _M2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
_TO_UNIT = 2.0**-53
_TWO_PI = 2.0 * math.pi


class RandomStream(Protocol):
    """What the device models draw (a subset of `numpy.random.Generator`)."""

    def random(self) -> float: ...

    def normal(self, loc: float = 0.0, scale: float = 1.0) -> float: ...

    def lognormal(self, mean: float = 0.0, sigma: float = 1.0) -> float: ...

    def exponential(self, scale: float = 1.0) -> float: ...

    def integers(self, high: int) -> int: ...


def _mix(z: int) -> int:
    """SplitMix64's output function of a 64-bit state."""
    z = ((z ^ (z >> 30)) * _M1) & _MASK
    z = ((z ^ (z >> 27)) * _M2) & _MASK
    return z ^ (z >> 31)


def stream_seed(key: int, i: int) -> int:
    """Seed of stream `i` of a run whose key is `key` (draw i + 1 of SplitMix64 seeded with the key)."""
    return _mix((key + (i + 1) * _GAMMA) & _MASK)


class CounterStream:
    """SplitMix64 from `seed` (see the module docstring); draws follow numpy's definitions."""

    __slots__ = ("_spare", "_state")

    def __init__(self, seed: int) -> None:
        self._state = int(seed) & _MASK
        self._spare: float | None = None  # the second normal of the last Box-Muller pair

    def _next(self) -> int:
        self._state = s = (self._state + _GAMMA) & _MASK
        z = ((s ^ (s >> 30)) * _M1) & _MASK
        z = ((z ^ (z >> 27)) * _M2) & _MASK
        return z ^ (z >> 31)

    def random(self) -> float:
        """Uniform in [0, 1) (53 random bits)."""
        return (self._next() >> 11) * _TO_UNIT

    def normal(self, loc: float = 0.0, scale: float = 1.0) -> float:
        """Normal(loc, scale), by the Box-Muller transform (two normals per pair of uniforms)."""
        z = self._spare
        if z is None:
            r = math.sqrt(-2.0 * math.log(1.0 - self.random()))
            angle = _TWO_PI * self.random()
            z, self._spare = r * math.cos(angle), r * math.sin(angle)
        else:
            self._spare = None
        return loc + scale * z

    def lognormal(self, mean: float = 0.0, sigma: float = 1.0) -> float:
        """exp(Normal(mean, sigma))."""
        return math.exp(self.normal(mean, sigma))

    def exponential(self, scale: float = 1.0) -> float:
        """Exponential with mean `scale`."""
        return -scale * math.log(1.0 - self.random())

    def integers(self, high: int) -> int:
        """Uniform integer in [0, high), high <= 2^63 (multiply-shift: bias at most high / 2^64)."""
        if not 0 < high <= 1 << 63:
            raise ValueError(f"high must be in (0, 2**63], got {high!r}")
        return (self._next() * high) >> 64
