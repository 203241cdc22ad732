"""SecAgg+ (Bell et al., CCS 2020), as Flower's SecAggPlusWorkflow runs it: pairwise-masked
secure aggregation over a sparse neighbour graph that survives dropouts.

Stages (each a message from every device still in, and the server's reply):

0. **Advertise keys**: device u draws two X25519 key pairs, (c_u^SK, c_u^PK) for encrypting
   shares and (s_u^SK, s_u^PK) for pairwise masks, and sends both public keys. U1: senders.
1. **Share keys**: the server sends u its neighbours' keys (a Harary graph of degree k over a
   random order of the cohort, k ~ 3 log2 n; the complete graph for small cohorts). u draws a
   self-mask seed b_u, splits b_u and s_u^SK t-of-(k+1) with Shamir among its neighbours and
   itself (as Flower does), and sends each neighbour v its two shares AES-GCM-encrypted under
   HKDF(X25519(c_u^SK, c_v^PK)), via the server. U2: senders.
2. **Masked input collection**: the server forwards to each u in U2 the shares addressed to it
   and asks for its integer weight w_u (public). u sends
   y_u = w_u x_u + PRG(b_u) + sum_{v in N(u) & U2} +-PRG(s_uv)  (mod 2^b),
   s_uv = HKDF(X25519(s_u^SK, s_v^PK)), + if u < v, - otherwise; x_u = the fixed-point update
   followed by its integrity-tag digits (`crypto.integrity`). PRG: AES-256-CTR. U3: senders.
3. **Unmasking**: the server tells each u in U3 which neighbours survived (U3) and which dropped
   after sharing (U2 \\ U3); u returns its share of b_v for each survivor and of s_v^SK for each
   dropped neighbour, never both kinds for one peer (and never its own s^SK). With t shares
   each, the server rebuilds the survivors' b_v and the dropped devices' s_v^SK, removes their
   masks and holds sum_{u in U3} w_u x_u (mod 2^b).

A device that drops in any stage is handled as above; when fewer than t share holders answer
for a secret the server needs (or fewer than t devices remain at a stage), no aggregate is made:
`TooFewSurvivorsError`, counted. b is the smallest width that holds the signed sum of n
devices at the largest weight (two's complement), and masked inputs travel bit-packed at b bits.

`mode="modeled"` runs the same stages, the same drop handling and the same byte counts with no
cryptography: the server sums w_u x_u mod 2^b directly; aggregates are bit-identical to real.
Every device call returns its message and a `StageCost`: bytes sent and received, the
operations it ran (identical in both modes) and, in real mode, the measured seconds;
`StageCost.seconds()` prices the operations with per-operation times (`OP_SECONDS`, measured
by benchmarks/secagg_bench.py), so the simulator can charge the same device time in both modes.
Nothing here knows simulated time: the simulator delivers messages and drops devices.
"""

from __future__ import annotations

import math
import struct
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crypto.encoding import FixedPointEncoder
from crypto.errors import CryptoError, OverflowRiskError
from crypto.integrity import Claim, DeviceTagger, IntegrityError, IntegrityVerifier, TagLayout
from crypto.randomness import RandomSource
from crypto.shamir import SHARE_BYTES, ShareError, reconstruct_bytes, share_bytes

__all__ = [
    "MODES",
    "OP_SECONDS",
    "AdvertiseKeys",
    "EncryptedShare",
    "KeyBundle",
    "MaskedInput",
    "ProtocolViolation",
    "SecAggAggregate",
    "SecAggConfig",
    "SecAggDevice",
    "SecAggServer",
    "ShareBundle",
    "SharedKeys",
    "StageCost",
    "TooFewSurvivorsError",
    "UnmaskRequest",
    "UnmaskResponse",
    "default_neighbours",
    "default_threshold",
    "harary_graph",
]

MODES = ("real", "modeled")
_KEY_BYTES = 32
_ID_BYTES = 8
_GCM_TAG = 16
_SHARE_PLAIN = 2 * _ID_BYTES + 2 * SHARE_BYTES  # src, dst, share of b, share of s^SK
_SHARE_MESSAGE = _ID_BYTES + _SHARE_PLAIN + _GCM_TAG  # dst in the clear for routing, then the AEAD ciphertext
_MASKED_HEADER = struct.Struct(">QQI")  # device, nonce, weight
_MAX_MOD_BITS = 60  # sums below 2^59 < P/2: the integrity tags' field

OP_SECONDS = {
    "keygen": 30e-6,  # one X25519 key pair
    "agree": 40e-6,  # one X25519 exchange and HKDF-SHA256
    "share": 2.6e-6,  # one Shamir share point of one 32-byte secret (t = 11)
    "reconstruct": 46e-6,  # one Lagrange interpolation of a secret (t = 11)
    "aead": 0.52e-6,  # one AES-GCM encryption or decryption of an 82-byte share pair
    "prg_value": 10e-9,  # one 64-bit AES-256-CTR keystream word, masked to b bits and added
    "value": 0.12e-6,  # quantize, tag (alpha's SHAKE-256 stream included), weight and bit-pack one value
}
"""Seconds per operation on one core of the reference host (benchmarks/secagg_bench.py --calibrate
measures them); the simulator scales them by each device's speed."""


class TooFewSurvivorsError(CryptoError):
    """Too few devices (or share holders) remain for the protocol to finish: no aggregate."""

    def __init__(self, message: str, stage: str) -> None:
        super().__init__(message)
        self.stage = stage


class ProtocolViolation(CryptoError):
    """A request a device must refuse: e.g. both kinds of share for one peer, or malformed."""


def default_neighbours(n: int) -> int:
    """k, the neighbours per device: the whole cohort up to 20 devices, else the even number
    2 * ceil(1.5 * log2 n) (n = 100: 20; n = 1000: 30; Bell et al. take k = O(log n))."""
    if n <= 21:
        return n - 1
    return min(n - 1, 2 * math.ceil(1.5 * math.log2(n)))


def default_threshold(k: int) -> int:
    """t: a strict majority of the k + 1 share holders (neighbours and the device itself), so a
    server that tells half of them a device dropped and half it survived gets t of neither kind."""
    return (k + 1) // 2 + 1


def harary_graph(order: Sequence[int], k: int) -> dict[int, frozenset[int]]:
    """Neighbours in the Harary graph H(k, n) laid on `order`: position i is joined to positions
    i +- 1 .. i +- k/2 (mod n); k even, or k = n - 1 (the complete graph)."""
    n = len(order)
    if k >= n - 1:
        return {u: frozenset(order) - {u} for u in order}
    if k % 2 or k < 2:
        raise CryptoError(f"a sparse SecAgg+ graph needs an even degree k >= 2, got {k}")
    half = k // 2
    return {
        order[i]: frozenset(order[(i + d) % n] for d in range(-half, half + 1) if d != 0) for i in range(n)
    }


@dataclass(frozen=True)
class SecAggConfig:
    """One cohort's public parameters: n devices, k neighbours, threshold t, the encoding.

    `encoder` quantizes updates (num_values, weight_bits, scale_bits, value_bound, clip) with
    room for the integrity tags; `mod_bits` b holds the signed sum of n devices at the largest
    weight. k and t default to `default_neighbours(n)` and `default_threshold(k)`.
    """

    num_values: int
    cohort_size: int
    neighbours: int | None = None
    threshold: int | None = None
    weight_bits: int = 8
    scale_bits: int = 16
    value_bound: float = 8.0
    clip: bool = False
    encoder: FixedPointEncoder = field(init=False)
    mod_bits: int = field(init=False)

    def __post_init__(self) -> None:
        n = self.cohort_size
        if not isinstance(n, int) or n < 2:
            raise CryptoError(f"a SecAgg+ cohort needs at least 2 devices, got {n!r}")
        k = default_neighbours(n) if self.neighbours is None else self.neighbours
        if not isinstance(k, int) or not 1 <= k <= n - 1:
            raise CryptoError(f"neighbours must be an int in [1, {n - 1}], got {k!r}")
        if k < n - 1 and k % 2:
            raise CryptoError(f"a sparse graph needs an even number of neighbours, got {k}")
        t = default_threshold(k) if self.threshold is None else self.threshold
        if not isinstance(t, int) or not 1 <= t <= k + 1:
            raise CryptoError(f"threshold must be an int in [1, {k + 1}] (k + 1 share holders), got {t!r}")
        object.__setattr__(self, "neighbours", k)
        object.__setattr__(self, "threshold", t)
        probe = FixedPointEncoder(None, self.num_values, n, self.weight_bits, self.scale_bits, self.value_bound,
                                  self.clip)
        tags = TagLayout.for_bound(probe.max_quantized).values
        encoder = FixedPointEncoder(None, self.num_values, n, self.weight_bits, self.scale_bits, self.value_bound,
                                    self.clip, tags)
        bits = encoder.slot_limit.bit_length() + 1
        if bits > _MAX_MOD_BITS:
            raise OverflowRiskError(
                f"sums of {n} devices at weight {encoder.max_weight} need {bits}-bit masks, over {_MAX_MOD_BITS}; "
                "lower scale_bits, value_bound or weight_bits"
            )
        object.__setattr__(self, "encoder", encoder)
        object.__setattr__(self, "mod_bits", bits)

    @property
    def k(self) -> int:
        assert self.neighbours is not None
        return self.neighbours

    @property
    def t(self) -> int:
        assert self.threshold is not None
        return self.threshold

    @property
    def wire_values(self) -> int:
        """Values masked per device: the update's and its tag digits."""
        return self.encoder.wire_values

    @property
    def masked_bytes(self) -> int:
        """Bytes of one masked input on the wire: its header and the values packed at b bits."""
        return _MASKED_HEADER.size + -(-self.wire_values * self.mod_bits // 8)


@dataclass
class StageCost:
    """What one party's part of one stage cost: bytes sent and received, operations run (the
    same in both modes) and, in real mode, the measured wall seconds."""

    sent_bytes: int = 0
    received_bytes: int = 0
    ops: dict[str, int] = field(default_factory=dict)
    measured_s: float | None = None

    def add(self, op: str, count: int = 1) -> None:
        self.ops[op] = self.ops.get(op, 0) + count

    def seconds(self, op_seconds: Mapping[str, float] = OP_SECONDS) -> float:
        """The device time these operations take at `op_seconds` per operation [s]."""
        return sum(op_seconds[op] * n for op, n in self.ops.items())


# ---- messages -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AdvertiseKeys:
    """Stage 0, device -> server: the two public keys (None in modeled mode)."""

    device: int
    enc_public: bytes | None
    mask_public: bytes | None

    nbytes = _ID_BYTES + 2 * _KEY_BYTES


@dataclass(frozen=True)
class KeyBundle:
    """Stage 0 reply, server -> device: the cohort id and its neighbours' public keys (in U1)."""

    cohort_id: bytes
    keys: Mapping[int, AdvertiseKeys]

    @property
    def nbytes(self) -> int:
        return len(self.cohort_id) + len(self.keys) * AdvertiseKeys.nbytes


@dataclass(frozen=True)
class EncryptedShare:
    """A device's two shares for one neighbour, AES-GCM-encrypted (None in modeled mode)."""

    src: int
    dst: int
    ciphertext: bytes | None

    nbytes = _SHARE_MESSAGE


@dataclass(frozen=True)
class SharedKeys:
    """Stage 1, device -> server: its encrypted shares, one per neighbour in U1."""

    device: int
    shares: tuple[EncryptedShare, ...]

    @property
    def nbytes(self) -> int:
        return _ID_BYTES + len(self.shares) * _SHARE_MESSAGE


@dataclass(frozen=True)
class ShareBundle:
    """Stage 2 request, server -> device: the shares addressed to it and its weight (public)."""

    shares: tuple[EncryptedShare, ...]
    weight: int

    @property
    def nbytes(self) -> int:
        return 4 + len(self.shares) * _SHARE_MESSAGE


@dataclass(frozen=True)
class MaskedInput:
    """Stage 2, device -> server: its origin, weight and masked vector (bit-packed bytes in real
    mode; in modeled mode the unmasked weighted integers, which stand for it)."""

    device: int
    nonce: int
    weight: int
    body: Any
    nbytes: int


@dataclass(frozen=True)
class UnmaskRequest:
    """Stage 3 request, server -> device: its neighbours that survived and that dropped after sharing."""

    survived: frozenset[int]
    dropped: frozenset[int]

    @property
    def nbytes(self) -> int:
        return _ID_BYTES * (len(self.survived) + len(self.dropped))


@dataclass(frozen=True)
class UnmaskResponse:
    """Stage 3, device -> server: shares of b for survivors, of s^SK for dropped neighbours."""

    device: int
    seed_shares: Mapping[int, bytes | None]
    key_shares: Mapping[int, bytes | None]

    @property
    def nbytes(self) -> int:
        return _ID_BYTES + (len(self.seed_shares) + len(self.key_shares)) * (_ID_BYTES + SHARE_BYTES)


# ---- primitives (real mode) ---------------------------------------------------------------------


def _crypto() -> Any:
    try:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import x25519
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    except ImportError:
        raise CryptoError(
            "real SecAgg+ needs the `cryptography` package (pip install cryptography), or use mode modeled"
        ) from None
    return hashes, x25519, Cipher, algorithms, modes, AESGCM, HKDF, InvalidTag


def _agree(private: Any, public: bytes | None, info: bytes) -> bytes:
    """HKDF-SHA256 of the X25519 shared secret: 32 bytes."""
    if public is None:
        raise ProtocolViolation("a real cohort got a modeled (keyless) message")
    hashes, x25519, *_, HKDF, _ = _crypto()
    shared = private.exchange(x25519.X25519PublicKey.from_public_bytes(public))
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(shared)


def _prg(seed: bytes, count: int, mask: int) -> np.ndarray:
    """`count` b-bit words of AES-256-CTR's keystream under `seed` (uint64)."""
    _, _, Cipher, algorithms, modes, *_ = _crypto()
    encryptor = Cipher(algorithms.AES(seed), modes.CTR(bytes(16))).encryptor()
    words = np.frombuffer(encryptor.update(bytes(8 * count)), dtype="<u8")
    return words & np.uint64(mask)


def _pack(values: np.ndarray, bits: int) -> bytes:
    """uint64 values below 2^bits, bit-packed little-endian."""
    raw = np.unpackbits(values.astype("<u8").view(np.uint8).reshape(-1, 8), axis=1, count=bits, bitorder="little")
    return np.packbits(raw.ravel(), bitorder="little").tobytes()


def _unpack(data: bytes, count: int, bits: int) -> np.ndarray:
    """The inverse of `_pack`."""
    raw = np.unpackbits(np.frombuffer(data, np.uint8), count=count * bits, bitorder="little").reshape(count, bits)
    words = np.zeros((count, 64), dtype=np.uint8)
    words[:, :bits] = raw
    return np.packbits(words, axis=1, bitorder="little").view("<u8").ravel()


def _pair_info(cohort_id: bytes, label: bytes, u: int, v: int) -> bytes:
    return b"ppafl-secagg+" + label + cohort_id + struct.pack(">QQ", min(u, v), max(u, v))


def _mask_sign(u: int, v: int) -> int:
    return 1 if u < v else -1


# ---- device -------------------------------------------------------------------------------------


class SecAggDevice:
    """One device's side of one SecAgg+ cohort. Call the four stages in order; each returns the
    message to send and the stage's `StageCost`. `tagger` adds integrity tags (None: untagged,
    the config's tag digits are then zero). A device object serves one cohort only."""

    def __init__(
        self,
        config: SecAggConfig,
        device: int,
        mode: str = "real",
        tagger: DeviceTagger | None = None,
        rng: RandomSource | None = None,
    ) -> None:
        if mode not in MODES:
            raise CryptoError(f"unknown SecAgg+ mode {mode!r}; use one of {', '.join(MODES)}")
        self.config, self.device, self.mode = config, device, mode
        self._tagger = tagger
        self._rng = rng or RandomSource()
        self._nonce = self._rng.bits(64)  # the update's nonce, drawn first: the same in both modes
        self._enc_key: Any = None
        self._mask_key: Any = None
        self._seed: bytes | None = None
        self._neighbours: dict[int, AdvertiseKeys] = {}
        self._cohort_id = b""
        self._held: dict[int, tuple[bytes | None, bytes | None]] = {}  # peer -> (its b share, its s^SK share)
        self._revealed: dict[int, str] = {}
        self._masked = False

    def advertise_keys(self) -> tuple[AdvertiseKeys, StageCost]:
        """Stage 0: two fresh X25519 key pairs; send the public keys."""
        start, cost = time.perf_counter(), StageCost()
        cost.add("keygen", 2)
        if self.mode == "real":
            x25519 = _crypto()[1]
            self._enc_key, self._mask_key = x25519.X25519PrivateKey.generate(), x25519.X25519PrivateKey.generate()
            msg = AdvertiseKeys(self.device, self._enc_key.public_key().public_bytes_raw(),
                                self._mask_key.public_key().public_bytes_raw())
        else:
            msg = AdvertiseKeys(self.device, None, None)
        cost.sent_bytes = msg.nbytes
        return msg, self._finish(cost, start)

    def share_keys(self, bundle: KeyBundle) -> tuple[SharedKeys, StageCost]:
        """Stage 1: share b and s^SK t-of-(k+1) among the neighbours in `bundle` and itself, encrypt
        each neighbour's shares for it."""
        start, cost = time.perf_counter(), StageCost(received_bytes=bundle.nbytes)
        cfg = self.config
        self._cohort_id = bundle.cohort_id
        self._neighbours = {v: keys for v, keys in bundle.keys.items() if v != self.device}
        holders = [self.device, *sorted(self._neighbours)]
        if len(holders) < cfg.t:
            raise TooFewSurvivorsError(
                f"device {self.device} has {len(holders) - 1} neighbour(s) left, fewer than t - 1 = {cfg.t - 1}", "share"
            )
        cost.add("share", 2 * len(holders))
        cost.add("agree", len(self._neighbours))
        cost.add("aead", len(self._neighbours))
        out = []
        if self.mode == "real":
            self._seed = self._rng.bytes(32)
            mask_secret = self._mask_key.private_bytes_raw()
            xs = [h + 1 for h in holders]
            seed_shares = share_bytes(self._seed, cfg.t, xs, self._rng)
            key_shares = share_bytes(mask_secret, cfg.t, xs, self._rng)
            self._held[self.device] = (seed_shares[self.device + 1], key_shares[self.device + 1])
            AESGCM = _crypto()[5]
            for v in sorted(self._neighbours):
                key = _agree(self._enc_key, self._neighbours[v].enc_public, _pair_info(self._cohort_id, b"enc", self.device, v))
                plain = struct.pack(">QQ", self.device, v) + seed_shares[v + 1] + key_shares[v + 1]
                nonce = struct.pack(">Q", self.device) + bytes(4)
                out.append(EncryptedShare(self.device, v, AESGCM(key).encrypt(nonce, plain, self._cohort_id)))
        else:
            self._held[self.device] = (None, None)
            out = [EncryptedShare(self.device, v, None) for v in sorted(self._neighbours)]
        msg = SharedKeys(self.device, tuple(out))
        cost.sent_bytes = msg.nbytes
        return msg, self._finish(cost, start)

    def masked_input(self, bundle: ShareBundle, update: Any) -> tuple[MaskedInput, StageCost]:
        """Stage 2: decrypt the shares addressed to it; send w * (q, tag digits) masked by PRG(b) and
        the pairwise masks with every neighbour that shared (U2)."""
        start, cost = time.perf_counter(), StageCost(received_bytes=bundle.nbytes)
        cfg, enc = self.config, self.config.encoder
        weight = int(bundle.weight)
        if not 1 <= weight <= enc.max_weight:
            raise ProtocolViolation(f"weight {weight} outside [1, {enc.max_weight}]")
        senders = set()
        for item in bundle.shares:
            if item.dst != self.device or item.src not in self._neighbours or item.src in senders:
                raise ProtocolViolation(f"share from {item.src} to {item.dst} is not for device {self.device}")
            senders.add(item.src)
            if self.mode == "real":
                self._held[item.src] = self._open_share(item)
            else:
                self._held[item.src] = (None, None)
        cost.add("aead", len(senders))
        q = enc.quantize(update)
        nonce = self._nonce
        digits = np.zeros(enc.tag_values, dtype=np.int64)
        if self._tagger is not None:
            digits = TagLayout.for_bound(enc.max_quantized).digits(self._tagger.tags(q, nonce))
        x = weight * np.concatenate([q, digits])
        mod_mask = (1 << cfg.mod_bits) - 1
        cost.add("agree", len(senders))
        cost.add("prg_value", (1 + len(senders)) * cfg.wire_values)
        cost.add("value", cfg.wire_values)
        if self.mode == "real":
            assert self._seed is not None
            y = x.astype(np.uint64) + _prg(self._seed, cfg.wire_values, mod_mask)
            for v in sorted(senders):
                seed = _agree(self._mask_key, self._neighbours[v].mask_public,
                              _pair_info(self._cohort_id, b"mask", self.device, v))
                pad = _prg(seed, cfg.wire_values, mod_mask)
                y = y + pad if _mask_sign(self.device, v) > 0 else y - pad
            body: Any = _pack(y & np.uint64(mod_mask), cfg.mod_bits)
        else:
            body = x
        self._masked = True
        msg = MaskedInput(self.device, nonce, weight, body, cfg.masked_bytes)
        cost.sent_bytes = msg.nbytes
        return msg, self._finish(cost, start)

    def _open_share(self, item: EncryptedShare) -> tuple[bytes, bytes]:
        AESGCM = _crypto()[5]
        key = _agree(self._enc_key, self._neighbours[item.src].enc_public,
                     _pair_info(self._cohort_id, b"enc", item.src, self.device))
        nonce = struct.pack(">Q", item.src) + bytes(4)
        try:
            plain = AESGCM(key).decrypt(nonce, item.ciphertext, self._cohort_id)
        except _crypto()[7]:  # InvalidTag: forged, corrupted or not for this device
            raise ProtocolViolation(f"share from {item.src} fails authentication") from None
        if struct.unpack_from(">QQ", plain) != (item.src, self.device):
            raise ProtocolViolation(f"share from {item.src} names other parties")
        return plain[16 : 16 + SHARE_BYTES], plain[16 + SHARE_BYTES :]

    def unmask(self, request: UnmaskRequest) -> tuple[UnmaskResponse, StageCost]:
        """Stage 3: shares of b for survivors, of s^SK for dropped neighbours; refuses both kinds for
        one peer (in this request or against an earlier one), its own s^SK, or peers it holds nothing of."""
        start, cost = time.perf_counter(), StageCost(received_bytes=request.nbytes)
        if not self._masked:
            raise ProtocolViolation(f"device {self.device} sent no masked input: it has nothing to unmask")
        both = request.survived & request.dropped
        if both:
            raise ProtocolViolation(f"asked for both kinds of share of device(s) {sorted(both)}: refused")
        if self.device in request.dropped:
            raise ProtocolViolation("asked for this device's own mask key: it did not drop")
        for peers, kind in ((request.survived, "seed"), (request.dropped, "key")):
            for v in peers:
                if v not in self._held:
                    raise ProtocolViolation(f"device {self.device} holds no share of device {v}")
                if self._revealed.get(v, kind) != kind:
                    raise ProtocolViolation(f"device {v}'s other share was already revealed: refused")
        for v in request.survived:
            self._revealed[v] = "seed"
        for v in request.dropped:
            self._revealed[v] = "key"
        msg = UnmaskResponse(
            self.device,
            {v: self._held[v][0] for v in sorted(request.survived)},
            {v: self._held[v][1] for v in sorted(request.dropped)},
        )
        cost.sent_bytes = msg.nbytes
        return msg, self._finish(cost, start)

    def _finish(self, cost: StageCost, start: float) -> StageCost:
        if self.mode == "real":
            cost.measured_s = time.perf_counter() - start
        return cost


# ---- server -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SecAggAggregate:
    """The unmasked sum of a cohort: per value sum_u w_u x_u (signed int64, update values then tag
    digits), and the claims (device, nonce, weight) of its contributions for the verifier."""

    config: SecAggConfig
    sums: np.ndarray
    claims: tuple[Any, ...]

    @property
    def weight_sum(self) -> int:
        return sum(c.weight for c in self.claims)

    def open(self, verifier: IntegrityVerifier | None) -> np.ndarray:
        """The update values' weighted sums after the verifier's checks (contributors, claims,
        replay, range, tags); the verifier is the devices' (or an authority's) integrity key."""
        enc = self.config.encoder
        if verifier is None:
            return self.sums[: enc.num_values].copy()
        verifier.check_claims(self.claims, self.weight_sum, len(self.claims))
        if self.sums.size and int(np.abs(self.sums).max()) > self.weight_sum * enc.max_quantized:
            verifier.refused_tampered += 1
            raise IntegrityError("SecAgg+ aggregate exceeds what its weight sum allows: tampered with")
        values = self.sums[: enc.num_values]
        verifier.verify(values, self.sums[enc.num_values :], self.claims)
        return values.copy()

    def average(self, verifier: IntegrityVerifier | None) -> np.ndarray:
        """The weighted average (float64) of the verified sums."""
        return self.open(verifier).astype(np.float64) / self.weight_sum / 2.0**self.config.encoder.scale_bits


class SecAggServer:
    """The server's side of one cohort: routes messages, tracks U1..U4, unmasks the sum.

    `cohort`: the invited device ids (distinct ints below 2^63); `rng` orders the Harary graph
    and draws the cohort id. `failures` counts aborted cohorts by stage (for the simulator).
    """

    def __init__(self, config: SecAggConfig, cohort: Sequence[int], mode: str = "real",
                 rng: RandomSource | None = None) -> None:
        if mode not in MODES:
            raise CryptoError(f"unknown SecAgg+ mode {mode!r}; use one of {', '.join(MODES)}")
        if len(set(cohort)) != len(cohort) or len(cohort) != config.cohort_size:
            raise CryptoError(f"cohort must hold {config.cohort_size} distinct device ids, got {len(cohort)}")
        if any(not isinstance(d, int) or not 0 <= d < 1 << 63 for d in cohort):
            raise CryptoError("device ids must be ints in [0, 2^63)")
        self.config, self.mode = config, mode
        rng = rng or RandomSource()
        order = list(cohort)
        for i in range(len(order) - 1, 0, -1):  # Fisher-Yates with the source's draws
            j = rng.integers_below(i + 1, 1)[0]
            order[i], order[j] = order[j], order[i]
        self.graph = harary_graph(order, config.k)
        self.cohort_id = rng.bytes(16)
        self.u1: dict[int, AdvertiseKeys] = {}
        self.u2: set[int] = set()
        self.u3: dict[int, MaskedInput] = {}
        self._routed: dict[int, list[EncryptedShare]] = {}
        self._weights: dict[int, int] = {}
        self.failures: dict[str, int] = {}
        self.costs: dict[str, StageCost] = {}

    def _require(self, count: int, stage: str, what: str) -> None:
        if count < self.config.t:
            self.failures[stage] = self.failures.get(stage, 0) + 1
            raise TooFewSurvivorsError(f"{what}: {count} < threshold t = {self.config.t}; no aggregate", stage)

    def receive_keys(self, messages: Iterable[AdvertiseKeys]) -> dict[int, KeyBundle]:
        """Stage 0 -> 1: U1 and, for each device in it, its neighbours' keys (those in U1)."""
        self.u1 = {m.device: m for m in messages if m.device in self.graph}
        self._require(len(self.u1), "advertise", "devices that advertised keys")
        return {u: KeyBundle(self.cohort_id, {v: self.u1[v] for v in sorted(self.graph[u]) if v in self.u1})
                for u in self.u1}

    def receive_shares(self, messages: Iterable[SharedKeys], weights: Mapping[int, int]) -> dict[int, ShareBundle]:
        """Stage 1 -> 2: U2 and, for each device in it, the shares addressed to it from U2 and its weight."""
        received = {m.device: m for m in messages if m.device in self.u1}
        self.u2 = set(received)
        self._require(len(self.u2), "share", "devices that shared their keys")
        routed: dict[int, list[EncryptedShare]] = {u: [] for u in self.u2}
        for msg in received.values():
            for item in msg.shares:
                if item.src != msg.device or item.dst not in self.graph[msg.device]:
                    raise ProtocolViolation(f"device {msg.device} sent a share for non-neighbour {item.dst}")
                if item.dst in routed:
                    routed[item.dst].append(item)
        self._routed = routed
        self._weights = {u: int(weights[u]) for u in self.u2}
        return {u: ShareBundle(tuple(routed[u]), self._weights[u]) for u in sorted(self.u2)}

    def receive_masked(self, messages: Iterable[MaskedInput]) -> dict[int, UnmaskRequest]:
        """Stage 2 -> 3: U3 and, for each device in it, which of its neighbours survived or dropped."""
        self.u3 = {m.device: m for m in messages if m.device in self.u2}
        packed = self.config.masked_bytes - _MASKED_HEADER.size
        for m in self.u3.values():
            wrong_body = self.mode == "real" and (not isinstance(m.body, bytes) or len(m.body) != packed)
            if m.weight != self._weights[m.device] or m.nbytes != self.config.masked_bytes or wrong_body:
                raise ProtocolViolation(f"device {m.device}'s masked input has weight {m.weight} (asked "
                                        f"{self._weights[m.device]}) or the wrong size")
        self._require(len(self.u3), "masked", "devices that sent masked inputs")
        dropped = self.u2 - set(self.u3)
        return {
            u: UnmaskRequest(
                frozenset(v for v in self.graph[u] | {u} if v in self.u3 and self._holds(u, v)),
                frozenset(v for v in self.graph[u] if v in dropped and self._holds(u, v)),
            )
            for u in sorted(self.u3)
        }

    def _holds(self, holder: int, owner: int) -> bool:
        """Whether `holder` received `owner`'s shares (it is `owner`, or got them forwarded)."""
        return holder == owner or any(item.src == owner for item in self._routed.get(holder, ()))

    def receive_unmask(self, messages: Iterable[UnmaskResponse]) -> SecAggAggregate:
        """Stage 3 -> the sum: rebuild survivors' b and dropped devices' s^SK from t shares each,
        remove every mask; TooFewSurvivorsError when some secret has fewer than t shares."""
        cfg = self.config
        start, cost = time.perf_counter(), StageCost()
        answers = {m.device: m for m in messages if m.device in self.u3}
        self._require(len(answers), "unmask", "devices that answered the unmasking request")
        dropped = self.u2 - set(self.u3)
        seeds: dict[int, dict[int, bytes | None]] = {u: {} for u in self.u3}
        keys: dict[int, dict[int, bytes | None]] = {v: {} for v in dropped}
        for ans in answers.values():
            for v, s in ans.seed_shares.items():
                if v in seeds:
                    seeds[v][ans.device + 1] = s
            for v, s in ans.key_shares.items():
                if v in keys:
                    keys[v][ans.device + 1] = s
        for owner, shares in (*seeds.items(), *keys.items()):
            if len(shares) < cfg.t:
                self.failures["unmask"] = self.failures.get("unmask", 0) + 1
                raise TooFewSurvivorsError(
                    f"device {owner}'s secret has {len(shares)} share(s), fewer than t = {cfg.t}: no aggregate", "unmask"
                )
        mod_mask = (1 << cfg.mod_bits) - 1
        cost.add("reconstruct", len(seeds) + len(keys))
        cost.add("value", len(self.u3) * cfg.wire_values)
        if self.mode == "real":
            total = np.zeros(cfg.wire_values, dtype=np.uint64)
            for msg in self.u3.values():
                total += _unpack(msg.body, cfg.wire_values, cfg.mod_bits)
            for shares in seeds.values():
                total -= _prg(self._reconstruct(shares), cfg.wire_values, mod_mask)
            for v, shares in keys.items():
                private = _crypto()[1].X25519PrivateKey.from_private_bytes(self._reconstruct(shares))
                for w in sorted(self.graph[v] & set(self.u3)):
                    if not self._holds(w, v):
                        continue  # w got no shares from v, so it did not mask with v
                    seed = _agree(private, self.u1[w].mask_public, _pair_info(self.cohort_id, b"mask", w, v))
                    pad = _prg(seed, cfg.wire_values, mod_mask)
                    total = total - pad if _mask_sign(w, v) > 0 else total + pad
                    cost.add("agree")
                    cost.add("prg_value", cfg.wire_values)
            total &= np.uint64(mod_mask)
            cost.add("prg_value", len(seeds) * cfg.wire_values)
        else:
            total = np.zeros(cfg.wire_values, dtype=np.uint64)
            for msg in self.u3.values():
                total += msg.body.astype(np.uint64)
            total &= np.uint64(mod_mask)
            for v in keys:
                pairs = sum(1 for w in self.graph[v] & set(self.u3) if self._holds(w, v))
                cost.add("agree", pairs)
                cost.add("prg_value", pairs * cfg.wire_values)
            cost.add("prg_value", len(seeds) * cfg.wire_values)
        signed = total.astype(np.int64)
        signed[total >= np.uint64(1 << (cfg.mod_bits - 1))] -= np.int64(1) << np.int64(cfg.mod_bits)
        if self.mode == "real":
            cost.measured_s = time.perf_counter() - start
        self.costs["unmask"] = cost
        claims = tuple(Claim(m.device, m.nonce, m.weight) for m in sorted(self.u3.values(), key=lambda m: m.device))
        return SecAggAggregate(cfg, signed, claims)

    def _reconstruct(self, shares: Mapping[int, bytes | None]) -> bytes:
        try:
            return reconstruct_bytes({x: s for x, s in shares.items() if s is not None}, self.config.t)
        except ShareError as exc:
            raise ProtocolViolation(f"unmasking failed: {exc}") from None
