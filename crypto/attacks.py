"""Key recovery against SHE from what an honest-but-curious server legitimately holds.

The server holds the public modulus N = p*q, the parameter set (bit sizes), the public slot
layout of the payloads and the ciphertexts clients send it. A ciphertext is c = x + p*t with
x = r*L + M small: at most `r_bits + k2 + 1` bits against p's k0. That gap breaks the scheme:

1. **p from N and the ciphertexts.** c = x (mod p) with x tiny next to p.
   - One ciphertext suffices when x < N^(1/6) (the paper's parameters: x < 2^322, N^(1/6) =
     2^682): Coppersmith's method in Howgrave-Graham's form, a 3x3 lattice on the
     polynomials N, f(x) = x - c and x*f(x) (all have the root x0 = x mod p); LLL yields a
     polynomial h with h(x0) = 0 over the integers, whose root gives p = gcd(c - x0, N).
   - Otherwise (the high-throughput set: x < 2^1962) an approximate-common-divisor lattice on
     N and t ciphertexts: the basis [[2^rho, c_1..c_t], [0, -N, 0..], ..] holds the short vector
     q*(2^rho, x_1, .., x_t), so q = its first entry / 2^rho and p = N / q.
2. **r_i from the residues x_i = c_i mod p = r_i*L + M_i**, with M_i a packed plaintext bounded
   by the public layout (|M_i| < 2^rho): simultaneous Diophantine approximation, the basis
   [[2^(rho+1), x_1..x_t], [0, -x_0, 0..], ..] holds (r_0 2^(rho+1), r_0 x_1 - r_1 x_0, ..), whose
   entries (~2^(r_bits + rho)) are shorter than the lattice's Gaussian length when
   t * (k2 - rho) > r_bits: ~20 samples at high_throughput (M ~ 2^1782, L ~ 2^1800), where this
   lattice has dimension ~21-31. Its first entry gives r_0, the others every r_i.
3. **L.** Where |M| << r (the paper's set: M < 2^149, r ~ 2^160), L = round(x_0 / r_0). Otherwise
   (high_throughput) L is read one slot (slot_bits bits) at a time: modulo 2^s,
   x_i = r_i L + q_i0 with q_i0 the slot-0 value (|q| <= max_quantized, public), so each of the
   2*max_quantized + 1 guesses of sample 0's slot value gives a candidate L mod 2^s =
   (x_0 - q) r_0^-1, and only the true one leaves every other sample's slot value in range.
   Then x_i <- (x_i - r_i L_low - q_i0) / 2^s has the same shape with one slot fewer; when no
   slot is left, x_i = r_i L_high exactly.
4. **Decryption:** M = (c mod p) mod L, unpacked with the public layout.

The attack reads only the `ServerView`; tests compare what it returns with the real key after
it returns. Lattice reduction is python-flint's `fmpz_mat.lll` (`pip install .[attack]`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crypto.encoding import SlotLayout, unpack_slots
from crypto.errors import CryptoError
from crypto.integrity import TagLayout
from crypto.she import PublicParams

__all__ = [
    "AttackDemo",
    "AttackError",
    "AttackUnavailable",
    "RecoveredKey",
    "ServerView",
    "attack_fresh_key",
    "attack_payloads",
    "decrypt_update",
    "recover_key",
]

_LLL_SLACK_BITS = 6  # the reduced vector may be up to ~2^6 longer than the target (LLL factor, sqrt(dim))


class AttackError(CryptoError):
    """The attack did not succeed with the data given (e.g. too few ciphertexts)."""


class AttackUnavailable(CryptoError):
    """The lattice library the attack needs is not installed."""


@dataclass(frozen=True)
class ServerView:
    """What an honest-but-curious server holds: public data only.

    public: the modulus N and the parameter set; layout: the slot layout (in every payload's
    header); max_quantized: the bound |q| <= value_bound * 2^scale_bits of one client's
    fixed-point values (a public setting of the encoder); ciphertexts: ciphertexts of single
    clients' updates the server received; tag_values: the integrity-tag digits after the update's
    values (public: a function of max_quantized).
    """

    public: PublicParams
    layout: SlotLayout
    max_quantized: int
    ciphertexts: tuple[int, ...]
    tag_values: int = 0


@dataclass(frozen=True)
class RecoveredKey:
    """What the attack found: the factors of N and, where it got it, the plaintext modulus L.

    `method` names how p was found; `seconds` is the wall time of each step.
    """

    p: int
    q: int
    L: int | None
    method: str
    ciphertexts_used: int
    seconds: dict[str, float] = field(default_factory=dict)


def _flint() -> Any:
    try:
        import flint
    except ImportError:
        raise AttackUnavailable(
            "the SHE key-recovery attack needs the lattice library python-flint; install it with "
            "`pip install 'python-flint>=0.6'` (or `pip install .[attack]`)"
        ) from None
    return flint


def _reduced_rows(rows: list[list[int]]) -> list[list[int]]:
    """The rows of an LLL-reduced basis of the lattice spanned by `rows`, shortest first."""
    reduced = _flint().fmpz_mat(rows).lll().tolist()
    return sorted(([int(v) for v in row] for row in reduced), key=lambda r: sum(v * v for v in r))


def _integer_roots(a2: int, a1: int, a0: int) -> list[int]:
    """Integer roots of a2*x^2 + a1*x + a0."""
    if a2 == 0:
        return [-a0 // a1] if a1 != 0 and a0 % a1 == 0 else []
    disc = a1 * a1 - 4 * a2 * a0
    if disc < 0:
        return []
    s = math.isqrt(disc)
    if s * s != disc:
        return []
    return [num // (2 * a2) for num in (-a1 + s, -a1 - s) if num % (2 * a2) == 0]


def _noise_bits(public: PublicParams) -> int:
    """Bits of x = r*L + m for one fresh ciphertext, from the public bit sizes alone."""
    prm = public.params
    return prm.r_bits + prm.k2 + 1


def _coppersmith_applies(public: PublicParams) -> bool:
    """The 3x3 lattice finds x0 when sqrt(3) * 2^(1/2) * (N X^3)^(1/3) < p (Howgrave-Graham, LLL's factor)."""
    log_n, log_p = public.n.bit_length(), public.params.k0 - 1
    return log_n / 3 + _noise_bits(public) + 2 + _LLL_SLACK_BITS < log_p


def _factor_from_one(n: int, c: int, noise_bits: int) -> int | None:
    """Coppersmith / Howgrave-Graham on f(x) = x - c mod p: p, or None."""
    X = 1 << noise_bits
    for row in _reduced_rows([[n, 0, 0], [-c, X, 0], [0, -c * X, X * X]]):
        for x0 in _integer_roots(row[2] // (X * X), row[1] // X, row[0]):
            g = math.gcd(c - x0, n)
            if 0 < x0 < X and 1 < g < n:
                return g
    return None


def _acd_samples(public: PublicParams) -> int:
    """Ciphertexts the approximate-common-divisor lattice needs: t > (log q + slack) / (log p - rho - slack)."""
    log_p = public.params.k0 - 1
    gap = log_p - _noise_bits(public) - _LLL_SLACK_BITS
    if gap <= 0:
        raise AttackError("the noise x = r*L + m fills p: this lattice cannot separate it")
    return math.ceil((public.params.k0 + _LLL_SLACK_BITS) / gap) + 2


def _factor_from_many(n: int, cts: Sequence[int], noise_bits: int) -> int | None:
    """The approximate-common-divisor lattice on N and `cts`: p, or None."""
    t, scale = len(cts), 1 << noise_bits
    rows = [[scale, *cts]] + [[0] * (i + 1) + [-n] + [0] * (t - i - 1) for i in range(t)]
    for row in _reduced_rows(rows):
        cofactor = abs(row[0]) // scale
        if cofactor > 1 and n % cofactor == 0:
            p = n // cofactor
            if all(c % p < scale for c in cts):  # p is the factor under which the ciphertexts are small
                return p
    return None


def _recover_factor(view: ServerView) -> tuple[int, str, int]:
    n, noise, cts = view.public.n, _noise_bits(view.public), view.ciphertexts
    if _coppersmith_applies(view.public):
        for used, c in enumerate(cts[:4], start=1):
            p = _factor_from_one(n, c, noise)
            if p is not None:
                return p, "Coppersmith (Howgrave-Graham, 3x3 lattice) on one ciphertext", used
    need = _acd_samples(view.public)
    if len(cts) < need:
        raise AttackError(f"the approximate-common-divisor lattice needs {need} ciphertexts, got {len(cts)}")
    for t in range(need, min(len(cts), 2 * need) + 1, max(1, need // 4)):
        p = _factor_from_many(n, cts[:t], noise)
        if p is not None:
            return p, f"approximate common divisor (lattice of dimension {t + 1}: N and {t} ciphertexts)", t
    raise AttackError("the lattice did not yield a factor of N")


def _plaintext_noise_bits(view: ServerView) -> int:
    """Bits of |M| for one client's packed plaintext: |M| < 2 * max_quantized * 2^(slot_bits*(slots-1))."""
    layout = view.layout
    return view.max_quantized.bit_length() + 1 + layout.slot_bits * (layout.slots_per_ciphertext - 1)


def _recover_multipliers(view: ServerView, xs: list[int], noise: int) -> list[int] | None:
    """Every r_i of x_i = r_i L + M_i (|M_i| < 2^noise) from the SDA lattice, or None."""
    prm = view.public.params
    scale, t = 1 << (noise + 1), len(xs) - 1
    rows = [[scale, *xs[1:]]] + [[0] * (i + 1) + [-xs[0]] + [0] * (t - i - 1) for i in range(t)]
    for row in _reduced_rows(rows):
        if row[0] == 0 or row[0] % scale:
            continue
        sign = 1 if row[0] > 0 else -1
        r0 = abs(row[0]) // scale
        rs = [r0]
        for x, entry in zip(xs[1:], row[1:]):
            r, rem = divmod(r0 * x - sign * entry, xs[0])
            rs.append(r if rem == 0 else -1)
        if all(r.bit_length() == prm.r_bits for r in rs):
            return rs
    return None


def _plaintext_modulus_by_slots(view: ServerView, xs: list[int], rs: list[int]) -> int | None:
    """L from x_i = r_i L + M_i, one slot of s bits at a time (see the module's step 3), or None."""
    layout, bound, k2 = view.layout, view.max_quantized, view.public.params.k2
    s = layout.slot_bits
    mask, half, wrap = (1 << s) - 1, 1 << (s - 1), 1 << 64
    pivot = next((i for i, r in enumerate(rs) if r % 2), None)
    if pivot is None:
        return None  # every r_i even: no inverse mod 2^s (probability 2^-t)
    order = [pivot] + [i for i in range(len(xs)) if i != pivot]
    xs, rs = [xs[i] for i in order], [rs[i] for i in order]
    guesses = np.arange(-bound, bound + 1, dtype=np.int64).astype(np.uint64)
    inverse = np.uint64(pow(rs[0], -1, wrap))
    L, shift = 0, 0
    for _ in range(layout.slots_per_ciphertext + 1):
        quotients = {x // r if x % r == 0 else -1 for x, r in zip(xs, rs)}
        if len(quotients) == 1 and (q := quotients.pop()) >= 0:
            L += q << shift
            return L if L.bit_length() == k2 else None
        candidates = ((np.uint64(xs[0] % wrap) - guesses) * inverse) & np.uint64(mask)
        for x, r in zip(xs[1:], rs[1:]):
            raw = (np.uint64(x % wrap) - np.uint64(r % wrap) * candidates) & np.uint64(mask)
            slot = raw.astype(np.int64) - np.where(raw >= half, 1 << s, 0)
            candidates = candidates[np.abs(slot) <= bound]
            if candidates.size <= 1:
                break
        if candidates.size != 1:
            return None
        low = int(candidates[0])
        slot_values = [((x - r * low + half) & mask) - half for x, r in zip(xs, rs)]
        xs = [(x - r * low - v) >> s for x, r, v in zip(xs, rs, slot_values)]
        L += low << shift
        shift += s
    return None


def _recover_plaintext_modulus(view: ServerView, p: int) -> int | None:
    """L from x_i = c_i mod p = r_i L + M_i: the r_i by simultaneous Diophantine approximation,
    then L by rounding (|M| << r) or slot by slot; None if the lattice does not give the r_i."""
    prm, noise = view.public.params, _plaintext_noise_bits(view)
    gap = prm.k2 - 1 - noise - 1 - _LLL_SLACK_BITS  # log L - log |M| - 1, less the slack
    if gap <= 0:
        return None  # M fills L: the multipliers are not determined by the x_i
    need = math.ceil((prm.r_bits + _LLL_SLACK_BITS) / gap) + 2
    xs = [c % p for c in view.ciphertexts[: need + 1]]
    if len(xs) < need + 1:
        raise AttackError(f"recovering L needs {need + 1} ciphertexts, got {len(xs)}")
    rs = _recover_multipliers(view, xs, noise)
    if rs is None:
        return None
    if noise + 2 <= prm.r_bits - 1:  # |M| << r: x_0 / r_0 rounds to L
        L = (2 * xs[0] + rs[0]) // (2 * rs[0])
        bound = 1 << noise
        if L.bit_length() == prm.k2 and all(abs((x + L // 2) % L - L // 2) < bound for x in xs):
            return L
        return None
    return _plaintext_modulus_by_slots(view, xs, rs)


def recover_key(view: ServerView) -> RecoveredKey:
    """Factor N and, where the gap allows, recover L, using only `view` (public data)."""
    _flint()  # fail first, and clearly, when the lattice library is missing
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    p, method, used = _recover_factor(view)
    seconds["factor N"] = time.perf_counter() - start
    start = time.perf_counter()
    L = _recover_plaintext_modulus(view, p)
    seconds["recover L"] = time.perf_counter() - start
    return RecoveredKey(p, view.public.n // p, L, method, used, seconds)


def decrypt_update(
    key: RecoveredKey, layout: SlotLayout, ciphertexts: Sequence[int], tag_values: int = 0
) -> np.ndarray:
    """A client's update (float64) from its ciphertexts and the recovered key: (c mod p) mod L,
    unpacked, without the last `tag_values` values (its integrity tags)."""
    if key.L is None:
        raise AttackError("L was not recovered, so the ciphertexts cannot be decrypted")
    L, half = key.L, key.L // 2
    plaintexts = [m - L if m > half else m for m in ((c % key.p) % L for c in ciphertexts)]
    values = unpack_slots(layout, plaintexts)
    return values[: values.size - tag_values].astype(np.float64) / 2.0**layout.scale_bits


@dataclass(frozen=True)
class AttackDemo:
    """One run of the attack: what the server saw, what it recovered, and (fresh key) the check.

    `decrypted` holds the first victim update as the attack decrypted it (None without L);
    `truth` the update the client actually encrypted (fresh key only); `key_correct` compares
    the recovered p and L with the real key, computed after the attack returned.
    """

    view: ServerView
    key: RecoveredKey
    decrypted: np.ndarray | None
    decrypt_seconds: float
    truth: np.ndarray | None = None
    key_correct: dict[str, bool] | None = None


def _decrypt_first(key: RecoveredKey, view: ServerView, cts: Sequence[int]) -> tuple[np.ndarray | None, float]:
    if key.L is None:
        return None, 0.0
    start = time.perf_counter()
    values = decrypt_update(key, view.layout, cts, view.tag_values)
    return values, time.perf_counter() - start


def attack_fresh_key(params: Any, clients: int, seed: int | None = None, num_values: int = 2000) -> AttackDemo:
    """Clients under a fresh key (`seed`: reproducible, insecure; None: CSPRNG) each send the server an
    update of `num_values` values; the attack runs on the server's view; then it is checked."""
    from crypto.secure_agg import make_secure_aggregation

    holder, server = make_secure_aggregation("real", params, num_values=num_values, max_clients=clients, seed=seed)
    draw = np.random.default_rng(seed)
    updates = [draw.normal(0.0, 0.1, num_values) for _ in range(clients)]  # a model's parameters
    received = [holder.encrypt(u) for u in updates]
    public = server.public
    assert isinstance(public, PublicParams)
    layout = server.encoder.layout
    view = ServerView(public, layout, server.encoder.max_quantized, tuple(c for v in received for c in v.body),
                      server.encoder.tag_values)
    key = recover_key(view)
    decrypted, seconds = _decrypt_first(key, view, tuple(received[0].body))
    secret = holder._cipher.secret  # the check, after the attack returned
    correct = {"p": key.p == secret.p} if key.L is None else {"p": key.p == secret.p, "L": key.L == secret.L}
    return AttackDemo(view, key, decrypted, seconds, updates[0], correct)


def attack_payloads(payloads: Sequence[bytes], public: PublicParams, value_bound: float = 8.0) -> AttackDemo:
    """The attack on encrypted vectors saved with `EncryptedVector.to_bytes()`, given the modulus N.

    `value_bound` is the encoder's public bound on |value| (the scenario's encryption.value_bound).
    """
    from crypto.secure_agg import EncryptedVector

    if not payloads:
        raise AttackError("no payloads given")
    vectors = [EncryptedVector.from_bytes(data, public) for data in payloads]
    layout = vectors[0].layout
    assert isinstance(layout, SlotLayout)
    if any(v.layout != layout for v in vectors):
        raise AttackError("the payloads have different slot layouts: give payloads of one run")
    max_quantized = int(np.rint(value_bound * 2.0**layout.scale_bits))
    view = ServerView(public, layout, max_quantized, tuple(c for v in vectors for c in v.body),
                      TagLayout.for_bound(max_quantized).values)
    key = recover_key(view)
    decrypted, seconds = _decrypt_first(key, view, tuple(vectors[0].body))
    return AttackDemo(view, key, decrypted, seconds)
