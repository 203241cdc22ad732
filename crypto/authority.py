"""Authority BFV: no device holds a key that reads another device's update.

A separate decryption party, the `DecryptionAuthority`, generates the BFV key pair and the
integrity key and keeps both. Each device it enrolls gets an `UpdateEncryptor` holding a TenSEAL
context with the public key only (public-key encryption; the secret key is not in it) and its
own integrity material (alpha's seed and its own pad key). The server holds the keyless context
and sums ciphertexts as under the shared key (`crypto.secure_agg.Aggregator`). The authority
decrypts aggregates only: it refuses, with a `CryptoError` subclass and a count, any aggregate
of fewer than `min_contributors` distinct devices (the devices are bound into the aggregate's
claims by the integrity tags, so the server cannot inflate the count), whose claims do not add
up, that replays an accepted one, or whose decrypted values fail the tags.

It is a party of the simulation: the simulator puts its link, its decryption time
(`last_decrypt_seconds`, measured; or the calibrated per-parameter cost) and its availability
on the clock. `mode="modeled"` keeps the integers in the clear with the same checks and bytes.

Threshold (t-of-n) decryption among a committee instead of one authority needs a library
that shares the BFV secret key and combines partial decryptions; none installs here for
Python 3.11 (docs/crypto.md says what it would need).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from crypto.bfv import BFVEncoder, BFVEncryptor, BFVSecret, bfv_authority_keygen
from crypto.errors import CryptoError
from crypto.integrity import DEFAULT_MIN_CONTRIBUTORS, IntegrityKey, IntegrityVerifier, TagLayout
from crypto.params import BFV_WIDE, BFVParams
from crypto.randomness import RandomSource
from crypto.secure_agg import MODES, Aggregator, EncryptedAggregate, UpdateEncryptor, build_encoder, open_aggregate

__all__ = ["DecryptionAuthority", "make_authority_aggregation"]

_MODELED_KEY_ID = b"modeled".ljust(16, b"\0")


class DecryptionAuthority:
    """The party that holds the BFV secret key and the integrity key; decrypts aggregates only.

    `secret` None: modeled (no encryption, the same checks). `refused_small` and
    `refused_tampered` count refusals for the simulator's summary.
    """

    def __init__(
        self,
        encoder: BFVEncoder,
        secret: BFVSecret | None,
        encryptor: BFVEncryptor | None,
        integrity: IntegrityKey,
        min_contributors: int = DEFAULT_MIN_CONTRIBUTORS,
        seed: int | None = None,
    ) -> None:
        self._encoder = encoder
        self._secret = secret
        self._encryptor = encryptor
        self._integrity = integrity
        self._seed = seed
        self.verifier = IntegrityVerifier(integrity, TagLayout.for_bound(encoder.max_quantized), min_contributors)
        self.last_decrypt_seconds = 0.0

    @property
    def mode(self) -> str:
        return "modeled" if self._secret is None else "real"

    @property
    def encoder(self) -> BFVEncoder:
        return self._encoder

    @property
    def key_id(self) -> bytes:
        return _MODELED_KEY_ID if self._secret is None else self._secret.key_id

    @property
    def refused_small(self) -> int:
        """Aggregates refused for holding fewer than `min_contributors` distinct devices."""
        return self.verifier.refused_small

    @property
    def refused_tampered(self) -> int:
        """Aggregates refused as corrupted, tampered with or replayed."""
        return self.verifier.refused_tampered

    def enroll(self, device: int) -> UpdateEncryptor:
        """Device `device`'s material: the public-key context and its own integrity material."""
        rng = RandomSource(None if self._seed is None else self._seed, stream=2 + device)
        tagger = self._integrity.tagger(device, self.verifier.layout)
        return UpdateEncryptor(self._encoder, self._encryptor, rng, integrity=tagger)

    def decrypt_sum(self, aggregate: EncryptedAggregate) -> np.ndarray:
        """The exact weighted sums sum_i w_i q_i (int64), after every check; the time it took is in
        `last_decrypt_seconds`."""
        start = time.perf_counter()
        try:
            return open_aggregate(aggregate, self._encoder, self.key_id, self._secret, self.verifier)
        finally:
            self.last_decrypt_seconds = time.perf_counter() - start

    def decrypt_average(self, aggregate: EncryptedAggregate) -> np.ndarray:
        """The weighted average sum_i w_i q_i / sum_i w_i / 2^scale_bits (float64)."""
        totals = self.decrypt_sum(aggregate)
        return totals.astype(np.float64) / aggregate.weight_sum / 2.0**self._encoder.scale_bits

    def __getstate__(self) -> dict[str, Any]:
        raise CryptoError(
            "the decryption authority holds the secret key and is never pickled (sent to a worker or an "
            "object store): keep it in the process that plays the authority"
        )


def make_authority_aggregation(
    mode: str,
    params: BFVParams = BFV_WIDE,
    *,
    num_values: int,
    max_clients: int,
    weight_bits: int = 8,
    scale_bits: int = 16,
    value_bound: float = 8.0,
    clip: bool = False,
    min_contributors: int = DEFAULT_MIN_CONTRIBUTORS,
    seed: int | None = None,
) -> tuple[DecryptionAuthority, Aggregator]:
    """The authority and the server's aggregator; devices get their material from `authority.enroll`.

    BFV public-key ciphertexts carry more fresh noise than symmetric ones, so the compact set
    holds fewer clients here; the default is the wide set. `seed` makes nonces and the integrity
    key reproducible (NOT secure: tests); BFV keys always come from SEAL's CSPRNG.
    """
    if mode not in MODES:
        raise CryptoError(f"unknown secure aggregation mode {mode!r}; use one of {', '.join(MODES)}")
    encoder = build_encoder(params, num_values, max_clients, weight_bits, scale_bits, value_bound, clip,
                            public_key=True)
    assert isinstance(encoder, BFVEncoder)
    integrity = IntegrityKey.generate(None if seed is None else seed.to_bytes(8, "big"))
    if mode == "modeled":
        return DecryptionAuthority(encoder, None, None, integrity, min_contributors, seed), Aggregator(encoder)
    secret, encryptor, public = bfv_authority_keygen(encoder)
    return DecryptionAuthority(encoder, secret, encryptor, integrity, min_contributors, seed), Aggregator(
        encoder, public
    )
