"""Fixed-point encoding of float updates (both schemes) and packing of signed values into SHE plaintexts.

`FixedPointEncoder` quantizes a value v to q = round(v * 2^scale_bits), |q| <= Q =
round(value_bound * 2^scale_bits), and bounds a weighted sum (BFV's `BFVEncoder` puts one q
per slot). SHE's `PackedEncoder` packs several into one plaintext:
each plaintext packs `slots_per_ciphertext` slots of `slot_bits` bits: M = sum_j q_j * 2^(j*slot_bits),
a signed integer. A weighted sum over up to K clients with integer weights < 2^weight_bits keeps
every slot within A = K * (2^weight_bits - 1) * Q; slot_bits is the smallest width that holds
[-A, A] in two's complement. Decoding adds the bias C = sum_j 2^(slot_bits-1) * 2^(j*slot_bits)
before reading the slots: this absorbs the borrow a negative slot takes from its neighbour, then
subtracts 2^(slot_bits-1) from each field. The constructor refuses any setting where a slot,
the packed plaintext (|M| < L/2) or r*L + M (< p) could overflow.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crypto.errors import CryptoError, NonFiniteUpdateError, OverflowRiskError

__all__ = [
    "FixedPointEncoder",
    "PackedEncoder",
    "SlotLayout",
    "flatten_update",
    "pack_slots",
    "trim_padding",
    "unpack_records",
    "unpack_slots",
]

_MAX_SLOT_BITS = 54  # slot sums stay below 2^53: exact in int64 and float64
_CHUNK_VALUES = 1 << 18  # values packed per numpy pass, bounds temporary memory


@dataclass(frozen=True)
class SlotLayout:
    """How a vector of `num_values` fixed-point values maps onto ciphertexts (public)."""

    num_values: int
    scale_bits: int
    slot_bits: int
    slots_per_ciphertext: int
    ciphertext_bytes: int

    @property
    def num_ciphertexts(self) -> int:
        return -(-self.num_values // self.slots_per_ciphertext)


def flatten_update(update: Any) -> np.ndarray:
    """A flat float64 vector from a 1-D array or a state_dict (values concatenated in order)."""
    if isinstance(update, Mapping):
        if not update:
            raise CryptoError("the state_dict update is empty")
        parts = [_as_array(v, f"state_dict[{k!r}]").ravel() for k, v in update.items()]
        return np.concatenate(parts)
    arr = _as_array(update, "update")
    if arr.ndim != 1:
        raise CryptoError(f"update must be a 1-D vector or a state_dict, got an array of shape {arr.shape}")
    return arr


def _as_array(value: Any, what: str) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, without importing torch
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiu":
        raise CryptoError(f"{what} has dtype {arr.dtype}; only real numbers (float or int) can be encoded")
    return arr.astype(np.float64, copy=False)


@dataclass(frozen=True)
class FixedPointEncoder:
    """Fixed-point quantization of `num_values` values, sized for a weighted sum of up to
    `max_clients` updates with integer weights in [1, 2^weight_bits - 1].

    q = round(v * 2^scale_bits), |v| <= value_bound; a sum then stays within
    `slot_limit` = max_clients * max_weight * max_quantized in magnitude. Values beyond
    `value_bound` raise `OverflowRiskError` unless `clip=True`. `params` is the scheme's
    parameter set; the subclasses add how the integers map onto ciphertexts. `tag_values`
    integrity-tag digits (`crypto.integrity`, each in [0, max_quantized]) follow the update's
    values in every payload: the layout holds `wire_values` = num_values + tag_values.
    """

    params: Any
    num_values: int
    max_clients: int
    weight_bits: int = 8
    scale_bits: int = 16
    value_bound: float = 8.0
    clip: bool = False
    tag_values: int = 0
    max_quantized: int = field(init=False)
    slot_limit: int = field(init=False)
    layout: Any = field(init=False)  # the scheme's public layout (set by the subclass)

    def __post_init__(self) -> None:
        self._check_arguments()
        q_max = int(np.rint(self.value_bound * 2.0**self.scale_bits))
        if q_max < 1:
            raise CryptoError(
                f"value_bound={self.value_bound} * 2^scale_bits={self.scale_bits} rounds to 0: "
                "raise scale_bits or value_bound"
            )
        object.__setattr__(self, "max_quantized", q_max)
        object.__setattr__(self, "slot_limit", self.max_clients * self.max_weight * q_max)

    def _check_arguments(self) -> None:
        for name, low, high in (
            ("num_values", 1, None),
            ("max_clients", 1, None),
            ("tag_values", 0, None),
            ("weight_bits", 1, 32),
            ("scale_bits", 0, 52),
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low or (high and value > high):
                allowed = f"an int >= {low}" if high is None else f"an int in [{low}, {high}]"
                raise CryptoError(f"{type(self).__name__}.{name} must be {allowed}, got {value!r}")
        bound = self.value_bound
        if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not math.isfinite(bound) or bound <= 0:
            raise CryptoError(f"{type(self).__name__}.value_bound must be a finite number > 0, got {bound!r}")

    @property
    def wire_values(self) -> int:
        """Values per payload: the update's, then its integrity-tag digits."""
        return self.num_values + self.tag_values

    @property
    def max_weight(self) -> int:
        """The largest integer weight a client may get."""
        return (1 << self.weight_bits) - 1

    @property
    def num_ciphertexts(self) -> int:
        return int(self.layout.num_ciphertexts)

    def quantize(self, update: Any) -> np.ndarray:
        """The fixed-point integers round(v * 2^scale_bits) of a vector or state_dict (int64)."""
        v = flatten_update(update)
        if v.size != self.num_values:
            raise CryptoError(f"update has {v.size} values, the encoder was built for num_values={self.num_values}")
        finite = np.isfinite(v)
        if not finite.all():
            bad = np.flatnonzero(~finite)
            raise NonFiniteUpdateError(
                f"update holds {bad.size} non-finite values (first: {v[bad[0]]} at index {bad[0]}); NaN and "
                "infinity cannot be encoded: the local training probably diverged"
            )
        if self.clip:
            v = np.clip(v, -self.value_bound, self.value_bound)
        else:
            worst = int(np.argmax(np.abs(v)))
            if abs(v[worst]) > self.value_bound:
                raise OverflowRiskError(
                    f"update value {v[worst]} at index {worst} exceeds value_bound={self.value_bound}; "
                    "raise value_bound (costs slot bits) or build the encoder with clip=True"
                )
        return np.rint(v * 2.0**self.scale_bits).astype(np.int64)

    def check_quantized(self, quantized: np.ndarray) -> np.ndarray:
        """`quantized` as int64 after checking its shape and bound (what `quantize` returns)."""
        q = np.asarray(quantized)
        if q.dtype.kind not in "iu" or q.shape != (self.num_values,):
            raise CryptoError(
                f"quantized update must be integers of shape ({self.num_values},), got {q.dtype} {q.shape}; "
                "use quantize() first"
            )
        if q.size and int(np.abs(q).max()) > self.max_quantized:
            raise OverflowRiskError(
                f"quantized value {int(np.abs(q).max())} exceeds the encoder's bound {self.max_quantized}"
            )
        return q.astype(np.int64, copy=False)


@dataclass(frozen=True)
class PackedEncoder(FixedPointEncoder):
    """SHE's encoder: fixed-point values packed into slots of SHE plaintexts (`params`: SHEParams).

    The constructor refuses any setting where a slot, the packed plaintext (|M| < L/2) or
    r*L + M (< p) could overflow for an admissible aggregate.
    """

    layout: SlotLayout = field(init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        limit = self.slot_limit
        slot_bits = limit.bit_length() + 1
        if slot_bits > _MAX_SLOT_BITS:
            raise OverflowRiskError(
                f"a slot must hold +-{limit} (max_clients {self.max_clients} * max weight {self.max_weight} * "
                f"max quantized value {self.max_quantized}), {slot_bits} bits, over the {_MAX_SLOT_BITS}-bit limit; "
                "lower scale_bits, value_bound, weight_bits or max_clients"
            )
        slots = self._max_slots(limit, slot_bits)
        self._check_below_p()
        layout = SlotLayout(self.wire_values, self.scale_bits, slot_bits, slots, self.params.ciphertext_bytes)
        object.__setattr__(self, "layout", layout)

    def _max_slots(self, limit: int, slot_bits: int) -> int:
        """The most slots whose packed sum stays below L/2 for every L keygen can draw."""
        unit, slots = 0, 0
        while True:
            unit += 1 << (slots * slot_bits)  # sum_{j<=slots} 2^(j*slot_bits)
            if 2 * limit * unit >= self.params.l_min:
                break
            slots += 1
        if slots == 0:
            raise OverflowRiskError(
                f"one {slot_bits}-bit slot (+-{limit}) already reaches L/2 (L >= 3*2^{self.params.k2 - 2}); "
                f"lower scale_bits, value_bound, weight_bits or max_clients, or use a larger k2"
            )
        return slots

    def _check_below_p(self) -> None:
        """sum_i w_i (r_i L + M_i) < p for every admissible aggregate, so Dec's `mod p` is exact."""
        prm = self.params
        worst = self.max_clients * self.max_weight * (prm.r_max * prm.l_max + prm.l_max // 2)
        if worst >= prm.p_min:
            raise OverflowRiskError(
                f"an aggregate of {self.max_clients} clients with weights up to {self.max_weight} could reach "
                f"r*L + m ~ 2^{worst.bit_length()}, beyond p >= 2^{prm.p_min.bit_length() - 1}: it would decrypt "
                "wrong; lower max_clients or weight_bits, or use smaller k2/r_bits"
            )

    def pack(self, quantized: np.ndarray) -> list[int]:
        """Signed packed plaintexts M_k = sum_j q_(k*n+j) * 2^(j*slot_bits), one per ciphertext."""
        return pack_slots(self.layout, self.check_quantized(quantized))

    def unpack(self, totals: Sequence[int]) -> np.ndarray:
        """Slot values (int64, num_values) of signed packed integers, e.g. decrypted weighted sums."""
        return unpack_slots(self.layout, totals)


def pack_slots(layout: SlotLayout, values: np.ndarray) -> list[int]:
    """Signed packed plaintexts of int64 `values` (each |v| < 2^(slot_bits-1)), the last one zero-padded."""
    s, per = layout.slot_bits, layout.slots_per_ciphertext
    half = 1 << (s - 1)
    padded = np.full(-(-values.size // per) * per, half, dtype="<u8")  # padding slots hold 0
    padded[: values.size] = (values + half).astype("<u8")  # slot fields in [0, 2^s)
    width, bias = _plaintext_bytes(layout), _bias(layout)
    out: list[int] = []
    step = max(per, _CHUNK_VALUES // per * per)
    for start in range(0, padded.size, step):
        chunk = padded[start : start + step]
        bits = np.unpackbits(chunk.view(np.uint8).reshape(-1, 8), axis=1, count=s, bitorder="little")
        records = np.packbits(bits.reshape(-1, per * s), axis=1, bitorder="little")
        buf = records.tobytes()
        out.extend(int.from_bytes(buf[k : k + width], "little") - bias for k in range(0, len(buf), width))
    return out


def _bias(layout: SlotLayout) -> int:
    """C = sum_j 2^(slot_bits-1) * 2^(j*slot_bits): added before reading, it makes every field non-negative."""
    s = layout.slot_bits
    return sum((1 << (s - 1)) << (j * s) for j in range(layout.slots_per_ciphertext))


def _plaintext_bytes(layout: SlotLayout) -> int:
    return -(-layout.slot_bits * layout.slots_per_ciphertext // 8)


def unpack_records(layout: SlotLayout, totals: Sequence[int]) -> np.ndarray:
    """All slot values (int64, slots_per_ciphertext per integer) of signed packed integers `totals`.

    Needs only the public layout: whoever holds plaintexts (a key holder, or an attacker who
    recovered the key) reads the values the same way.
    """
    s, per, n_ct = layout.slot_bits, layout.slots_per_ciphertext, len(totals)
    width, bias = _plaintext_bytes(layout), _bias(layout)
    try:
        buf = b"".join((int(t) + bias).to_bytes(width, "little") for t in totals)
    except OverflowError:
        raise CryptoError(_CORRUPT) from None
    out = np.empty(n_ct * per, dtype=np.int64)
    step_cts = max(1, _CHUNK_VALUES // per)
    for first in range(0, n_ct, step_cts):
        rows = np.frombuffer(buf, np.uint8, count=min(step_cts, n_ct - first) * width,
                             offset=first * width).reshape(-1, width)
        bits = np.unpackbits(rows, axis=1, bitorder="little")
        if bits[:, per * s :].any():
            raise CryptoError(_CORRUPT)
        fields = np.packbits(bits[:, : per * s].reshape(-1, s), axis=1, bitorder="little")
        words = np.zeros((fields.shape[0], 8), dtype=np.uint8)
        words[:, : fields.shape[1]] = fields
        out[first * per : first * per + fields.shape[0]] = words.view("<u8").ravel().astype(np.int64)
    out -= 1 << (s - 1)
    return out


def unpack_slots(layout: SlotLayout, totals: Sequence[int]) -> np.ndarray:
    """Slot values (int64, num_values) of one packed integer per ciphertext; padding slots must be 0."""
    if len(totals) != layout.num_ciphertexts:
        raise CryptoError(f"got {len(totals)} packed integers, the layout has {layout.num_ciphertexts}")
    return trim_padding(unpack_records(layout, totals), layout.num_values)


def trim_padding(values: np.ndarray, num_values: int) -> np.ndarray:
    """The first `num_values` of all slot values; the padding slots after them must hold 0."""
    if values[num_values:].any():
        raise CryptoError(_CORRUPT)
    return values[:num_values]


_CORRUPT = (
    "decrypted aggregate does not fit its slots: wrong key, corrupted ciphertext, or more clients/weight "
    "than the encoder was built for"
)
