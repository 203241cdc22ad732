"""The byte format of encrypted vectors and aggregates, checked on the way in.

Layout (big-endian): a header (magic, version, kind, key id, the public layout, weight sum,
count, and for a vector its origin: device id and nonce), the ciphertexts at a fixed width
each, for an aggregate its claims (device, nonce, weight per contribution: 20 bytes each),
then the first 16 bytes of a SHA-256 digest of everything before it. The digest catches
truncation and accidental corruption; it is not a MAC (the server holds no secret): forgery
and tampering are caught by the integrity tags inside the ciphertexts (`crypto.integrity`).

- SHE (`PPSH`, 64-byte header): each ciphertext is an integer below N, 2*k0/8 bytes wide.
- BFV (`PPBF`, 72-byte header): each ciphertext is TenSEAL's serialization of one SEAL
  ciphertext, `BFVParams.ciphertext_bytes` wide, checked by loading it into the context.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from crypto.bfv import BFVLayout, BFVPublic
from crypto.encoding import SlotLayout
from crypto.errors import PayloadError
from crypto.integrity import Claim, Origin
from crypto.she import PublicParams

__all__ = ["KIND_AGGREGATE", "KIND_VECTOR", "Payload", "decode_payload", "encode_payload", "payload_nbytes"]

KIND_VECTOR = 1
KIND_AGGREGATE = 2
_KIND_NAMES = {KIND_VECTOR: "encrypted vector", KIND_AGGREGATE: "encrypted aggregate"}
_VERSION = 2
_SHE_MAGIC, _SHE_HEADER = b"PPSH", struct.Struct(">4sBB16sQBBHHQIQQ")
_BFV_MAGIC, _BFV_HEADER = b"PPBF", struct.Struct(">4sBB16sQBBQIQIQQ")
_CLAIM = struct.Struct(">QQI")
_DIGEST_BYTES = 16

Layout = SlotLayout | BFVLayout


@dataclass(frozen=True)
class Payload:
    """The decoded content of a payload: ints (SHE) or serialized ciphertexts (BFV)."""

    layout: Layout
    ciphertexts: tuple[Any, ...]
    weight_sum: int
    count: int
    origin: Origin | None
    claims: tuple[Claim, ...]


def _header(layout: Layout) -> struct.Struct:
    return _BFV_HEADER if isinstance(layout, BFVLayout) else _SHE_HEADER


def payload_nbytes(layout: Layout, claims: int = 0) -> int:
    """Bytes of a serialized vector (claims=0) or of an aggregate of `claims` contributions of this
    layout: what a link carries."""
    return _header(layout).size + layout.num_ciphertexts * layout.ciphertext_bytes + _CLAIM.size * claims + _DIGEST_BYTES


def _digest(data: bytes | memoryview) -> bytes:
    return hashlib.sha256(data).digest()[:_DIGEST_BYTES]


def encode_payload(
    kind: int, key_id: bytes, layout: Layout, ciphertexts: Sequence[Any], weight_sum: int, count: int,
    origin: Origin | None = None, claims: Sequence[Claim] = (),
) -> bytes:
    """Serialize ciphertexts with their layout, key id, a vector's origin or an aggregate's weight sum,
    count and claims."""
    width = layout.ciphertext_bytes
    device, nonce = origin if origin is not None else (0, 0)
    if isinstance(layout, BFVLayout):
        header = _BFV_HEADER.pack(
            _BFV_MAGIC, _VERSION, kind, key_id, layout.num_values, layout.scale_bits,
            layout.slots_per_ciphertext.bit_length() - 1, layout.plain_modulus, width, weight_sum, count, device, nonce,
        )
        body = header + b"".join(ciphertexts)
    else:
        header = _SHE_HEADER.pack(
            _SHE_MAGIC, _VERSION, kind, key_id, layout.num_values, layout.scale_bits, layout.slot_bits,
            layout.slots_per_ciphertext, width, weight_sum, count, device, nonce,
        )
        body = header + b"".join(c.to_bytes(width, "big") for c in ciphertexts)
    body += b"".join(_CLAIM.pack(*c) for c in claims)
    return body + _digest(body)


def _parse_header(
    data: bytes, public: PublicParams | BFVPublic, what: str
) -> tuple[Layout, int, bytes, int, int, Origin]:
    """(layout, kind, key id, weight sum, count, origin) from the header, in `public`'s scheme's format."""
    bfv = isinstance(public, BFVPublic)
    magic, fmt = (_BFV_MAGIC, _BFV_HEADER) if bfv else (_SHE_MAGIC, _SHE_HEADER)
    if len(data) < fmt.size + _DIGEST_BYTES:
        raise PayloadError(f"{what} payload is {len(data)} bytes, shorter than its header: truncated")
    fields = fmt.unpack_from(data)
    if fields[0] != magic or fields[1] != _VERSION:
        raise PayloadError(
            f"not a ppafl {'BFV' if bfv else 'SHE'} payload (magic {fields[0]!r}, version {fields[1]}); "
            f"expected {magic!r} v{_VERSION}"
        )
    kind, key_id, num_values, scale_bits = fields[2:6]
    layout: Layout
    if bfv:
        log_slots, plain_modulus, width, weight_sum, count, device, nonce = fields[6:]
        if num_values < 1 or log_slots > 16:
            raise PayloadError(f"{what} payload header is corrupted (values {num_values}, slots 2^{log_slots})")
        layout = BFVLayout(num_values, scale_bits, 1 << log_slots, plain_modulus, width)
    else:
        slot_bits, per, width, weight_sum, count, device, nonce = fields[6:]
        if per < 1 or num_values < 1:
            raise PayloadError(f"{what} payload header is corrupted (slots per ciphertext {per}, values {num_values})")
        layout = SlotLayout(num_values, scale_bits, slot_bits, per, width)
    return layout, kind, key_id, weight_sum, count, Origin(device, nonce)


def decode_payload(data: bytes, public: PublicParams | BFVPublic, kind: int) -> Payload:
    """Parse and check a payload: length, digest, kind, key, layout and every ciphertext."""
    what = _KIND_NAMES[kind]
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise PayloadError(f"{what} payload must be bytes, got {type(data).__name__}")
    data = bytes(data)
    layout, got_kind, key_id, weight_sum, count, origin = _parse_header(data, public, what)
    if got_kind != kind:
        raise PayloadError(f"payload holds a {_KIND_NAMES.get(got_kind, f'kind {got_kind}')}, expected an {what}")
    claims = count if kind == KIND_AGGREGATE else 0
    if claims > len(data):
        raise PayloadError(f"{what} header claims {count} contributions: corrupted")
    expected = payload_nbytes(layout, claims)
    if len(data) != expected:
        raise PayloadError(
            f"{what} payload is {len(data)} bytes but its header describes {expected}: truncated or corrupted"
        )
    if _digest(memoryview(data)[: -_DIGEST_BYTES]) != data[-_DIGEST_BYTES:]:
        raise PayloadError(f"{what} payload fails its integrity digest: tampered with or corrupted in transit")
    if key_id != public.key_id:
        raise PayloadError(
            f"{what} was encrypted under key {key_id.hex()}, not this public parameter's key {public.key_id.hex()}"
        )
    width, start = layout.ciphertext_bytes, _header(layout).size
    view = memoryview(data)
    spans = range(start, start + layout.num_ciphertexts * width, width)
    ciphertexts: tuple[Any, ...]
    if isinstance(public, BFVPublic):
        assert isinstance(layout, BFVLayout)
        if (layout.plain_modulus, layout.slots_per_ciphertext, width) != (
            public.plain_modulus, public.params.slots, public.params.ciphertext_bytes
        ):
            raise PayloadError(f"{what} layout {layout} does not match this context's {public.layout}")
        ciphertexts = tuple(bytes(view[i : i + width]) for i in spans)
        for blob in ciphertexts:
            public.load(blob)
    else:
        if width != public.params.ciphertext_bytes:
            raise PayloadError(f"ciphertexts are {width} bytes, this key's are {public.params.ciphertext_bytes}")
        ciphertexts = tuple(int.from_bytes(view[i : i + width], "big") for i in spans)
        if max(ciphertexts) >= public.n:
            raise PayloadError(f"{what} holds a ciphertext >= N: not made under this public parameter")
    end = start + layout.num_ciphertexts * width
    parsed = tuple(Claim(*_CLAIM.unpack_from(data, end + i * _CLAIM.size)) for i in range(claims))
    return Payload(layout, ciphertexts, weight_sum, count, origin if kind == KIND_VECTOR else None, parsed)
