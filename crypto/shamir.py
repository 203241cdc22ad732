"""t-of-n Shamir secret sharing over the prime field GF(P), P = 2^256 + 297.

A secret s in [0, P) becomes the constant term of a random polynomial f of degree t - 1;
participant x (an int in [1, P)) gets f(x). Any t shares give s back by Lagrange interpolation
at 0; t - 1 shares are uniformly distributed whatever s is (perfect secrecy). P is the smallest
prime above 2^256, so any 32-byte secret (a PRG seed, an X25519 private key) is one field
element; a share is 33 bytes. `reconstruct` given more than t shares checks that every extra
share lies on the same polynomial, so a corrupted share is detected rather than silently
yielding a wrong secret.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from crypto.errors import CryptoError
from crypto.randomness import RandomSource

__all__ = ["PRIME", "SHARE_BYTES", "ShareError", "reconstruct", "reconstruct_bytes", "share", "share_bytes"]

PRIME = (1 << 256) + 297
"""The field's prime: the smallest above 2^256 (tests check its primality)."""

SHARE_BYTES = 33
"""Bytes of one share (a field element below 2^257)."""


class ShareError(CryptoError):
    """Shares that cannot give the secret: too few, malformed, or not on one polynomial."""


def _check_threshold(threshold: int, count: int) -> None:
    if not isinstance(threshold, int) or isinstance(threshold, bool) or not 1 <= threshold <= count:
        raise ShareError(f"threshold must be an int in [1, {count}] (the number of shares), got {threshold!r}")


def share(
    secret: int, threshold: int, xs: Sequence[int], rng: RandomSource | None = None, prime: int = PRIME
) -> dict[int, int]:
    """Shares {x: f(x)} of `secret` for the distinct points `xs` (ints in [1, prime)), any
    `threshold` of which reconstruct it. `rng`: the coefficients' source (default: OS CSPRNG)."""
    if not 0 <= secret < prime:
        raise ShareError(f"a secret must lie in [0, {prime}), got one of {int(secret).bit_length()} bits")
    if len(set(xs)) != len(xs) or any(not isinstance(x, int) or not 0 < x < prime for x in xs):
        raise ShareError(f"share points must be distinct ints in [1, prime), got {list(xs)!r}")
    _check_threshold(threshold, len(xs))
    coefficients = [secret, *(rng or RandomSource()).integers_below(prime, threshold - 1)]
    out = {}
    for x in xs:
        y = 0
        for c in reversed(coefficients):  # Horner
            y = (y * x + c) % prime
        out[x] = y
    return out


def _lagrange_at(points: Sequence[tuple[int, int]], at: int, prime: int) -> int:
    """The value at `at` of the polynomial of degree < len(points) through `points`."""
    total = 0
    for j, (xj, yj) in enumerate(points):
        num, den = 1, 1
        for m, (xm, _) in enumerate(points):
            if m != j:
                num = num * (at - xm) % prime
                den = den * (xj - xm) % prime
        total = (total + yj * num * pow(den, -1, prime)) % prime
    return total


def reconstruct(shares: Mapping[int, int], threshold: int, prime: int = PRIME) -> int:
    """The secret from at least `threshold` shares {x: y}; ShareError if fewer, or if the extra
    shares do not lie on the polynomial the first `threshold` define."""
    if len(shares) < threshold:
        raise ShareError(f"{len(shares)} share(s) cannot reconstruct a {threshold}-of-n secret")
    _check_threshold(threshold, len(shares))
    points = sorted((int(x), int(y) % prime) for x, y in shares.items())
    if any(not 0 < x < prime for x, _ in points):
        raise ShareError("share points must lie in [1, prime)")
    base = points[:threshold]
    for x, y in points[threshold:]:
        if _lagrange_at(base, x, prime) != y:
            raise ShareError(f"share at point {x} is not on the polynomial of the others: a corrupted share")
    return _lagrange_at(base, 0, prime)


def share_bytes(secret: bytes, threshold: int, xs: Sequence[int], rng: RandomSource | None = None) -> dict[int, bytes]:
    """Shares of a secret of at most 32 bytes, each `SHARE_BYTES` long."""
    if len(secret) > 32:
        raise ShareError(f"share_bytes takes secrets of at most 32 bytes, got {len(secret)}")
    return {x: y.to_bytes(SHARE_BYTES, "big") for x, y in share(int.from_bytes(secret, "big"), threshold, xs, rng).items()}


def reconstruct_bytes(shares: Mapping[int, bytes], threshold: int, length: int = 32) -> bytes:
    """The `length`-byte secret from byte shares (see `reconstruct`)."""
    secret = reconstruct({x: int.from_bytes(y, "big") for x, y in shares.items()}, threshold)
    if secret >> (8 * length):
        raise ShareError(f"the reconstructed secret does not fit {length} bytes: the shares are of another secret")
    return secret.to_bytes(length, "big")
