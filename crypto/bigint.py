"""Big-integer helpers: gmpy2 where it is installed, pure Python where it is not.

gmpy2 makes SHE's key generation and its 2048-bit products several times faster, but a
machine may lack it (a lent GPU machine, a minimal container). Without it the same
functions run on Python ints: the same keys for the same seed, only slower.

- `mpz`: gmpy2's integer type, or `int`.
- `is_prime(n)`: a probable-prime test: gmpy2's (30 rounds) where present; else Miller-Rabin,
  deterministic below 3.3e24 and with 16 bases drawn from n beyond that (for the random
  candidates of key generation one round already errs with probability far below 2^-80).
- `next_prime(n)`: the smallest prime greater than n.
"""

from __future__ import annotations

import math
import random
from typing import Any

__all__ = ["HAVE_GMPY2", "is_prime", "mpz", "next_prime"]

try:
    import gmpy2 as _gmpy2
except ImportError:  # pragma: no cover - exercised in a subprocess without gmpy2
    _gmpy2 = None

HAVE_GMPY2 = _gmpy2 is not None

mpz: Any = _gmpy2.mpz if _gmpy2 is not None else int

_SIEVE_LIMIT = 1 << 16  # next_prime strikes out multiples of the odd primes below this
_SIEVE_WINDOW = 4096  # odd candidates sieved at a time


def _odd_primes_below(limit: int) -> list[int]:
    flags = bytearray([1]) * limit
    flags[:2] = b"\0\0"
    for i in range(2, math.isqrt(limit) + 1):
        if flags[i]:
            flags[i * i :: i] = bytes(len(range(i * i, limit, i)))
    return [i for i in range(3, limit, 2) if flags[i]]


_SIEVE_PRIMES = _odd_primes_below(_SIEVE_LIMIT)
_SMALL_PRIMES = [p for p in _SIEVE_PRIMES if p < 2000]
_SMALL_PRIME_SET = frozenset(_SMALL_PRIMES)
_PRIMORIAL = math.prod(_SMALL_PRIMES)
_DETERMINISTIC_BASES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41)  # exact for n < 3.3e24
_DETERMINISTIC_LIMIT = 3317044064679887385961981
_ROUNDS = 30  # gmpy2
_PYTHON_ROUNDS = 16


def _strong_probable_prime(n: int, base: int, d: int, s: int) -> bool:
    x = pow(base, d, n)
    if x in (1, n - 1):
        return True
    for _ in range(s - 1):
        x = x * x % n
        if x == n - 1:
            return True
    return False


def _is_prime_python(n: int) -> bool:
    if n < 2:
        return False
    if n < 2000:
        return n == 2 or n in _SMALL_PRIME_SET
    if n % 2 == 0 or math.gcd(n, _PRIMORIAL) != 1:
        return False
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    if n < _DETERMINISTIC_LIMIT:
        bases: tuple[int, ...] | list[int] = _DETERMINISTIC_BASES
    else:  # bases derived from n: the answer is a function of n alone
        draw = random.Random(n)
        bases = [2, *(draw.randrange(3, n - 2) for _ in range(_PYTHON_ROUNDS - 1))]
    return all(_strong_probable_prime(n, b, d, s) for b in bases)


def is_prime(n: int) -> bool:
    """True if `n` is (with overwhelming probability, or for n < 3.3e24 certainly) prime."""
    n = int(n)
    if _gmpy2 is not None:
        return bool(_gmpy2.is_prime(n, _ROUNDS))
    return _is_prime_python(n)


def next_prime(n: int) -> Any:
    """The smallest prime greater than `n` (an `mpz` where gmpy2 is installed, else an int)."""
    if _gmpy2 is not None:
        return _gmpy2.next_prime(_gmpy2.mpz(n))
    start = (int(n) + 1) | 1  # the first odd candidate
    if n < 2:
        return 2
    if start < 1 << 32:  # small: trial by the tests alone
        while not _is_prime_python(start):
            start += 2
        return start
    while True:  # sieve a window of odd candidates start + 2i, then test the survivors in order
        alive = bytearray([1]) * _SIEVE_WINDOW
        for p in _SIEVE_PRIMES:
            first = (-start * ((p + 1) // 2)) % p  # the i with p | start + 2i
            alive[first::p] = bytes(len(range(first, _SIEVE_WINDOW, p)))
        for i in (i for i, ok in enumerate(alive) if ok):
            if _is_prime_python(start + 2 * i):
                return start + 2 * i
        start += 2 * _SIEVE_WINDOW
