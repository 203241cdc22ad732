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
2. **L from the residues x_i = c_i mod p = r_i*L + M_i**, with M_i a packed plaintext bounded by
   the public layout: simultaneous Diophantine approximation, the basis
   [[2^(rho+1), x_1..x_t], [0, -x_0, 0..], ..] holds r_0*(2^(rho+1), ..), so r_0 is its first entry
   and L = round(x_0 / r_0). This needs |M_0| << r_0 (true at the paper's parameters, where
   M < 2^149 and r ~ 2^160); at the high-throughput set (M ~ 2^1781) L is not recovered here.
3. **Decryption:** M = (c mod p) mod L, unpacked with the public layout.

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
    clients' updates the server received.
    """

    public: PublicParams
    layout: SlotLayout
    max_quantized: int
    ciphertexts: tuple[int, ...]


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


def _recover_plaintext_modulus(view: ServerView, p: int) -> int | None:
    """L by simultaneous Diophantine approximation on x_i = c_i mod p = r_i L + M_i, or None."""
    prm, noise = view.public.params, _plaintext_noise_bits(view)
    gap = prm.k2 - 1 - noise - 1 - _LLL_SLACK_BITS  # log L - log |M| - 1, less the slack
    if gap <= 0 or noise + 2 > prm.r_bits - 1:
        return None  # M is not small next to L, or next to r: round(x_0 / r_0) cannot give L
    need = math.ceil((prm.r_bits + _LLL_SLACK_BITS) / gap) + 2
    xs = [c % p for c in view.ciphertexts[: need + 1]]
    if len(xs) < need + 1:
        raise AttackError(f"recovering L needs {need + 1} ciphertexts, got {len(xs)}")
    scale, t = 1 << (noise + 1), len(xs) - 1
    rows = [[scale, *xs[1:]]] + [[0] * (i + 1) + [-xs[0]] + [0] * (t - i - 1) for i in range(t)]
    bound = 1 << noise
    for row in _reduced_rows(rows):
        r0 = abs(row[0]) // scale
        if r0 == 0:
            continue
        L = (2 * xs[0] + r0) // (2 * r0)  # round(x_0 / r_0)
        if L.bit_length() == prm.k2 and all(abs((x + L // 2) % L - L // 2) < bound for x in xs):
            return L
    return None


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


def decrypt_update(key: RecoveredKey, layout: SlotLayout, ciphertexts: Sequence[int]) -> np.ndarray:
    """A client's update (float64) from its ciphertexts and the recovered key: (c mod p) mod L, unpacked."""
    if key.L is None:
        raise AttackError("L was not recovered, so the ciphertexts cannot be decrypted")
    L, half = key.L, key.L // 2
    plaintexts = [m - L if m > half else m for m in ((c % key.p) % L for c in ciphertexts)]
    return unpack_slots(layout, plaintexts).astype(np.float64) / 2.0**layout.scale_bits


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


def _decrypt_first(key: RecoveredKey, layout: SlotLayout, cts: Sequence[int]) -> tuple[np.ndarray | None, float]:
    if key.L is None:
        return None, 0.0
    start = time.perf_counter()
    values = decrypt_update(key, layout, cts)
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
    view = ServerView(public, layout, server.encoder.max_quantized, tuple(c for v in received for c in v.body))
    key = recover_key(view)
    decrypted, seconds = _decrypt_first(key, layout, tuple(received[0].body))
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
    view = ServerView(public, layout, max_quantized, tuple(c for v in vectors for c in v.body))
    key = recover_key(view)
    decrypted, seconds = _decrypt_first(key, layout, tuple(vectors[0].body))
    return AttackDemo(view, key, decrypted, seconds)
