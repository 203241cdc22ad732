"""Privacy layer: SHE encryption, fixed-point slot packing and secure aggregation.

Knows nothing of the simulator or FL packages. See docs/crypto.md.
"""

from crypto.encoding import PackedEncoder, SlotLayout, flatten_update
from crypto.errors import CryptoError, NonFiniteUpdateError, OverflowRiskError, PayloadError
from crypto.params import HIGH_THROUGHPUT_PARAMS, PAPER_PARAMS, PARAM_SETS, SHEParams
from crypto.payload import payload_nbytes
from crypto.randomness import RandomSource
from crypto.secure_agg import (
    MODES,
    Aggregator,
    EncryptedAggregate,
    EncryptedVector,
    KeyHolder,
    make_secure_aggregation,
)
from crypto.she import PublicParams, SecretKey, add, decrypt, decrypt_many, encrypt, encrypt_many, keygen, mul_plain

__all__ = [
    "HIGH_THROUGHPUT_PARAMS",
    "MODES",
    "PAPER_PARAMS",
    "PARAM_SETS",
    "Aggregator",
    "CryptoError",
    "EncryptedAggregate",
    "EncryptedVector",
    "KeyHolder",
    "NonFiniteUpdateError",
    "OverflowRiskError",
    "PackedEncoder",
    "PayloadError",
    "PublicParams",
    "RandomSource",
    "SHEParams",
    "SecretKey",
    "SlotLayout",
    "add",
    "decrypt",
    "decrypt_many",
    "encrypt",
    "encrypt_many",
    "flatten_update",
    "keygen",
    "make_secure_aggregation",
    "mul_plain",
    "payload_nbytes",
]
