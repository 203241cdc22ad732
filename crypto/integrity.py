"""Integrity of aggregates: a linearly homomorphic tag that no tampered aggregate reproduces.

Every update q (the fixed-point integers a device encrypts or masks) carries TAG_COUNT tags

    tau_j(q) = <alpha_j, q> + pad_j(device, nonce)   (mod P = 2^61 - 1)

where alpha_j is a secret vector (one element of Z_P per value) and the pad a pseudo-random
element of Z_P that only the device and the verifier can compute (HMAC-SHA256 under a per-device
key). Each tag travels as `limbs` digits of `limb_bits` bits appended to the update's values
(every digit lies in [0, max_quantized], so it fits wherever a value fits). Weighted sums are
exact integer sums, so the digits of the aggregate recombine to sum_u w_u tau_u and

    sum_u w_u tau_j(q_u) = <alpha_j, S> + sum_u w_u pad_j(u, nonce_u)   (mod P)

for the aggregate S = sum_u w_u q_u. The verifier (the key holders, the decryption authority,
or the devices under SecAgg+) recomputes the right-hand side from the decrypted S and the
aggregate's claims (device, nonce, weight per contribution) and refuses on any mismatch:

- a change S' != S of the values (bit flips, swapped chunks, a scaled aggregate, a plaintext
  added by the server) passes only if the server guesses <alpha_j, S' - S> for both tags:
  probability 2^-122, since |S|, |S'| < P/2 makes S' - S nonzero mod P and alpha is uniform;
- a claim that does not match the contributions (a contributor added, dropped or reweighted,
  a weight sum or count that does not add up) leaves an unknown pad sum: probability 2^-122;
- an exact replay (the same contributions with the same weights as an aggregate already
  accepted) is refused by the verifier's memory of accepted aggregates.

The server holds neither alpha nor any pad key. A device holds alpha's seed and its own pad key
only: a captured device lets the server shift an aggregate's values undetected, not forge
another device's contribution (docs/threat-model.md). Stdlib only (SHAKE-256, HMAC-SHA256).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from crypto.errors import CryptoError

__all__ = [
    "ANONYMOUS",
    "DEFAULT_MIN_CONTRIBUTORS",
    "TAG_COUNT",
    "TAG_PRIME",
    "Claim",
    "DeviceTagger",
    "IntegrityError",
    "IntegrityKey",
    "IntegrityVerifier",
    "Origin",
    "ReplayError",
    "TagLayout",
    "TooFewContributorsError",
    "dot_mod_p",
]

TAG_PRIME = (1 << 61) - 1
"""P, the Mersenne prime the tags live modulo: above twice any admissible aggregate value."""

TAG_COUNT = 2
"""Independent tags per update: a forgery succeeds with probability P^-TAG_COUNT ~ 2^-122."""

DEFAULT_MIN_CONTRIBUTORS = 3
"""Distinct devices an aggregate needs before a verifier decrypts it: with two, each of the
two learns the other's update by subtracting its own."""

ANONYMOUS = (1 << 64) - 1
"""The device id of an update encrypted without one: such contributions count one device each."""

_LIMB = 21  # bits per limb of dot_mod_p: products < 2^42, 2^18 of them < 2^60
_CHUNK = 1 << 18
_MIN_LIMB_BITS = 8


class IntegrityError(CryptoError):
    """An aggregate failed its integrity check: corrupted, tampered with, or its claims are false."""


class ReplayError(IntegrityError):
    """An aggregate repeats the contributions and weights of one already accepted."""


class TooFewContributorsError(CryptoError):
    """An aggregate holds fewer distinct devices than the verifier's `min_contributors`."""


class Origin(NamedTuple):
    """Who made an update: the device id and a fresh 64-bit nonce (public metadata)."""

    device: int
    nonce: int


class Claim(NamedTuple):
    """One contribution an aggregate claims: device, the nonce of its update, its integer weight."""

    device: int
    nonce: int
    weight: int


def _limbs(values: np.ndarray) -> np.ndarray:
    """The three 21-bit limbs (low first) of uint64 values below 2^63, stacked along a new first axis."""
    mask = np.uint64((1 << _LIMB) - 1)
    return np.stack([(values >> np.uint64(_LIMB * k)) & mask for k in range(3)]).astype(np.int64)


def dot_mod_p(alpha: np.ndarray, x: np.ndarray) -> list[int]:
    """<alpha_j, x> mod P for each row alpha_j of `alpha` (uint64 elements of Z_P, shape (rows, n))
    and an int64 vector x of any sign; exact: 21-bit limbs, 2^18 values per integer product."""
    xm = np.mod(x.astype(np.int64, copy=False), TAG_PRIME).astype(np.uint64)  # in [0, P)
    rows = alpha.shape[0]
    acc = [[[0] * 3 for _ in range(3)] for _ in range(rows)]
    for start in range(0, x.size, _CHUNK):
        x_limbs = _limbs(xm[start : start + _CHUNK])  # (3, c)
        for j in range(rows):
            part = _limbs(alpha[j, start : start + _CHUNK]) @ x_limbs.T  # (3, 3), each < 2^60
            for a in range(3):
                for b in range(3):
                    acc[j][a][b] += int(part[a, b])
    return [
        sum(acc[j][a][b] << (_LIMB * (a + b)) for a in range(3) for b in range(3)) % TAG_PRIME for j in range(rows)
    ]


@dataclass(frozen=True)
class TagLayout:
    """How the tags ride as values: TAG_COUNT tags of `limbs` digits of `limb_bits` bits each.

    `limb_bits` is the largest b with 2^b - 1 <= max_quantized, so a digit is a valid value.
    """

    limb_bits: int
    limbs: int

    @classmethod
    def for_bound(cls, max_quantized: int) -> TagLayout:
        """The layout whose digits fit |value| <= max_quantized."""
        bits = (int(max_quantized) + 1).bit_length() - 1
        if bits < _MIN_LIMB_BITS:
            raise CryptoError(
                f"integrity tags need values up to at least 2^{_MIN_LIMB_BITS} - 1, but max_quantized is "
                f"{max_quantized}: raise scale_bits or value_bound"
            )
        return cls(bits, -(-TAG_PRIME.bit_length() // bits))

    @property
    def values(self) -> int:
        """Values the tags add to an update."""
        return TAG_COUNT * self.limbs

    def digits(self, tags: Sequence[int]) -> np.ndarray:
        """The tags as int64 digits, low digit first, tag after tag."""
        mask = (1 << self.limb_bits) - 1
        return np.array([(t >> (self.limb_bits * k)) & mask for t in tags for k in range(self.limbs)], dtype=np.int64)

    def recombine(self, digit_sums: np.ndarray) -> list[int]:
        """The tag sums mod P from the (exact, possibly large) sums of the digits."""
        ints = [int(v) for v in digit_sums]
        return [
            sum(ints[j * self.limbs + k] << (self.limb_bits * k) for k in range(self.limbs)) % TAG_PRIME
            for j in range(TAG_COUNT)
        ]


def _derive_alpha(seed: bytes, num_values: int) -> np.ndarray:
    """alpha_1..alpha_TAG_COUNT in Z_P from SHAKE-256 of the seed: uint64, shape (TAG_COUNT, n)."""
    raw = np.frombuffer(hashlib.shake_256(b"ppafl-alpha-v1" + seed).digest(8 * TAG_COUNT * num_values), dtype="<u8")
    return (raw & np.uint64(TAG_PRIME)).reshape(TAG_COUNT, num_values)  # 2^61 - 1 itself reads as 0 mod P


def _pads(pad_key: bytes, nonce: int) -> list[int]:
    """The TAG_COUNT pads of one update: HMAC-SHA256(pad key, nonce, j), 128 bits reduced mod P."""
    return [
        int.from_bytes(hmac.digest(pad_key, struct.pack(">QB", nonce, j), "sha256")[:16], "big") % TAG_PRIME
        for j in range(TAG_COUNT)
    ]


@dataclass(eq=False)
class DeviceTagger:
    """A device's integrity material: alpha's seed and its own pad key. Tags its updates."""

    device: int
    alpha_seed: bytes = field(repr=False)
    pad_key: bytes = field(repr=False)
    layout: TagLayout
    _alpha: np.ndarray | None = field(default=None, repr=False)

    def tags(self, quantized: np.ndarray, nonce: int) -> list[int]:
        """tau_j = <alpha_j, q> + pad_j(nonce) mod P for the update's fixed-point integers q."""
        if self._alpha is None or self._alpha.shape[1] != quantized.size:
            self._alpha = _derive_alpha(self.alpha_seed, quantized.size)
        dots = dot_mod_p(self._alpha, quantized)
        return [(d + p) % TAG_PRIME for d, p in zip(dots, _pads(self.pad_key, nonce))]

    def digits(self, quantized: np.ndarray, nonce: int) -> np.ndarray:
        """The tag digits to append to the update's values (int64, `layout.values` of them)."""
        return self.layout.digits(self.tags(quantized, nonce))

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_alpha"} | {"_alpha": None}


def _claims_digest(claims: Iterable[Claim]) -> bytes:
    return hashlib.sha256(b"".join(struct.pack(">QQQ", *c) for c in sorted(claims))).digest()


@dataclass(eq=False)
class IntegrityKey:
    """The verifier's secret (32 bytes): alpha's seed and every device's pad key derive from it.

    Whoever holds it (the shared-key key holders) can also tag updates as any device (`tags`).
    """

    master: bytes = field(repr=False)
    _alpha: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def generate(cls, seed: bytes | None = None) -> IntegrityKey:
        """A fresh key from the OS CSPRNG, or (tests) one derived from `seed` bytes."""
        return cls(secrets.token_bytes(32) if seed is None else hashlib.sha256(b"ppafl-mac-seed" + seed).digest())

    def _derive(self, label: bytes) -> bytes:
        return hmac.digest(self.master, label, "sha256")

    @property
    def alpha_seed(self) -> bytes:
        return self._derive(b"alpha")

    def pad_key(self, device: int) -> bytes:
        """Device `device`'s pad key (what it gets at enrollment)."""
        return self._derive(b"pad" + struct.pack(">Q", device))

    def tagger(self, device: int, layout: TagLayout) -> DeviceTagger:
        """Device `device`'s integrity material."""
        return DeviceTagger(device, self.alpha_seed, self.pad_key(device), layout)

    def alpha(self, num_values: int) -> np.ndarray:
        """alpha for `num_values` values (uint64, shape (TAG_COUNT, n); cached)."""
        if self._alpha is None or self._alpha.shape[1] != num_values:
            self._alpha = _derive_alpha(self.alpha_seed, num_values)
        return self._alpha

    def tags(self, quantized: np.ndarray, device: int, nonce: int) -> list[int]:
        """The tags device `device` would compute for `quantized` under `nonce`."""
        dots = dot_mod_p(self.alpha(quantized.size), quantized)
        return [(d + p) % TAG_PRIME for d, p in zip(dots, _pads(self.pad_key(device), nonce))]

    def __getstate__(self) -> dict:
        return {"master": self.master, "_alpha": None}


@dataclass(eq=False)
class IntegrityVerifier:
    """Checks aggregates before they are used: contributor count, claims, tags, replays.

    `refused_small` and `refused_tampered` count refusals (for the simulator's summary);
    `accepted` remembers digests of accepted claim sets to refuse exact replays.
    """

    key: IntegrityKey = field(repr=False)
    layout: TagLayout
    min_contributors: int = 1
    refused_small: int = 0
    refused_tampered: int = 0
    accepted: set[bytes] = field(default_factory=set, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.min_contributors, int) or self.min_contributors < 1:
            raise CryptoError(f"min_contributors must be an int >= 1, got {self.min_contributors!r}")

    def check_claims(self, claims: Sequence[Claim], weight_sum: int, count: int) -> None:
        """Before decrypting: enough distinct devices, and claims that add up to the weight sum and count."""
        distinct = len({c.device for c in claims if c.device != ANONYMOUS}) + sum(
            1 for c in claims if c.device == ANONYMOUS
        )
        if distinct < self.min_contributors:
            self.refused_small += 1
            raise TooFewContributorsError(
                f"aggregate of {distinct} distinct device(s) refused: the minimum is {self.min_contributors} "
                "(with fewer, a contributor or the server learns single updates)"
            )
        if len(claims) != count or sum(c.weight for c in claims) != weight_sum:
            self.refused_tampered += 1
            raise IntegrityError(
                f"aggregate claims {len(claims)} contributions of weight sum {sum(c.weight for c in claims)}, "
                f"its header says {count} and {weight_sum}: tampered with"
            )
        if _claims_digest(claims) in self.accepted:
            self.refused_tampered += 1
            raise ReplayError("aggregate repeats the contributions and weights of one already accepted: a replay")

    def verify(self, sums: np.ndarray, digit_sums: np.ndarray, claims: Sequence[Claim]) -> None:
        """After decrypting: the tag sums must equal <alpha, sums> + the claimed pads; remembers it.

        `sums`: the decrypted aggregate values (int64, exact); `digit_sums`: its tag digits.
        """
        expected = dot_mod_p(self.key.alpha(sums.size), sums)
        for claim in claims:
            for j, pad in enumerate(_pads(self.key.pad_key(claim.device), claim.nonce)):
                expected[j] = (expected[j] + claim.weight * pad) % TAG_PRIME
        if self.layout.recombine(digit_sums) != expected:
            self.refused_tampered += 1
            raise IntegrityError(
                "aggregate fails its integrity tag: corrupted or tampered with (values changed, or contributions "
                "that do not match its claims); refused"
            )
        self.accepted.add(_claims_digest(claims))
