"""The byte format of encrypted vectors and aggregates, checked on the way in.

Layout (big-endian): a 48-byte header (magic, version, kind, key id, slot layout, weight sum,
count), the ciphertexts at a fixed width each, then the first 16 bytes of a SHA-256 digest of
everything before it. The digest catches truncation and corruption; it is not a MAC (the
server holds no secret), so it does not authenticate the sender.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from crypto.encoding import SlotLayout
from crypto.errors import PayloadError
from crypto.she import PublicParams

__all__ = ["KIND_AGGREGATE", "KIND_VECTOR", "Payload", "decode_payload", "encode_payload", "payload_nbytes"]

KIND_VECTOR = 1
KIND_AGGREGATE = 2
_KIND_NAMES = {KIND_VECTOR: "encrypted vector", KIND_AGGREGATE: "encrypted aggregate"}
_MAGIC = b"PPSH"
_VERSION = 1
_HEADER = struct.Struct(">4sBB16sQBBHHQI")
_DIGEST_BYTES = 16


@dataclass(frozen=True)
class Payload:
    """The decoded content of a payload."""

    layout: SlotLayout
    ciphertexts: tuple[int, ...]
    weight_sum: int
    count: int


def payload_nbytes(layout: SlotLayout) -> int:
    """Bytes of a serialized vector or aggregate of this layout (what the uplink carries)."""
    return _HEADER.size + layout.num_ciphertexts * layout.ciphertext_bytes + _DIGEST_BYTES


def _digest(data: bytes | memoryview) -> bytes:
    return hashlib.sha256(data).digest()[:_DIGEST_BYTES]


def encode_payload(
    kind: int, key_id: bytes, layout: SlotLayout, ciphertexts: Sequence[int], weight_sum: int, count: int
) -> bytes:
    """Serialize ciphertexts with their layout, key id and (for aggregates) weight sum and count."""
    header = _HEADER.pack(
        _MAGIC, _VERSION, kind, key_id, layout.num_values, layout.scale_bits, layout.slot_bits,
        layout.slots_per_ciphertext, layout.ciphertext_bytes, weight_sum, count,
    )
    width = layout.ciphertext_bytes
    body = header + b"".join(c.to_bytes(width, "big") for c in ciphertexts)
    return body + _digest(body)


def decode_payload(data: bytes, public: PublicParams, kind: int) -> Payload:
    """Parse and check a payload: length, digest, kind, key and ciphertext range."""
    what = _KIND_NAMES[kind]
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise PayloadError(f"{what} payload must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < _HEADER.size + _DIGEST_BYTES:
        raise PayloadError(f"{what} payload is {len(data)} bytes, shorter than its header: truncated")
    magic, version, got_kind, key_id, num_values, scale_bits, slot_bits, per, width, weight_sum, count = (
        _HEADER.unpack_from(data)
    )
    if magic != _MAGIC or version != _VERSION:
        raise PayloadError(
            f"not a ppafl SHE payload (magic {magic!r}, version {version}); expected {_MAGIC!r} v{_VERSION}"
        )
    if per < 1 or num_values < 1:
        raise PayloadError(f"{what} payload header is corrupted (slots per ciphertext {per}, values {num_values})")
    layout = SlotLayout(num_values, scale_bits, slot_bits, per, width)
    expected = payload_nbytes(layout)
    if len(data) != expected:
        raise PayloadError(
            f"{what} payload is {len(data)} bytes but its header describes {expected}: truncated or corrupted"
        )
    if _digest(memoryview(data)[: -_DIGEST_BYTES]) != data[-_DIGEST_BYTES:]:
        raise PayloadError(f"{what} payload fails its integrity digest: tampered with or corrupted in transit")
    if got_kind != kind:
        raise PayloadError(f"payload holds a {_KIND_NAMES.get(got_kind, f'kind {got_kind}')}, expected an {what}")
    if key_id != public.key_id:
        raise PayloadError(
            f"{what} was encrypted under key {key_id.hex()}, not this public parameter's key {public.key_id.hex()}"
        )
    if width != public.params.ciphertext_bytes:
        raise PayloadError(f"ciphertexts are {width} bytes, this key's are {public.params.ciphertext_bytes}")
    view = memoryview(data)
    start = _HEADER.size
    ciphertexts = tuple(
        int.from_bytes(view[i : i + width], "big") for i in range(start, start + layout.num_ciphertexts * width, width)
    )
    if max(ciphertexts) >= public.n:
        raise PayloadError(f"{what} holds a ciphertext >= N: not made under this public parameter")
    return Payload(layout, ciphertexts, weight_sum, count)
