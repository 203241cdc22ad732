"""Privacy layer: SHE and BFV encryption (shared key or a decryption authority), SecAgg+,
integrity tags, fixed-point encoding and secure aggregation.

Knows nothing of the simulator or FL packages. See docs/crypto.md and docs/threat-model.md.
"""

from crypto.authority import DecryptionAuthority, make_authority_aggregation
from crypto.bfv import BFVEncoder, BFVEncryptor, BFVLayout, BFVPublic, BFVSecret
from crypto.encoding import FixedPointEncoder, PackedEncoder, SlotLayout, flatten_update
from crypto.errors import CryptoError, NonFiniteUpdateError, OverflowRiskError, PayloadError
from crypto.integrity import (
    DEFAULT_MIN_CONTRIBUTORS,
    IntegrityError,
    IntegrityKey,
    IntegrityVerifier,
    ReplayError,
    TooFewContributorsError,
)
from crypto.params import (
    BFV_COMPACT,
    BFV_PARAM_SETS,
    BFV_WIDE,
    DEFAULT_PARAMS,
    HIGH_THROUGHPUT_PARAMS,
    PAPER_PARAMS,
    PARAM_SETS,
    SCHEME_PARAM_SETS,
    BFVParams,
    SHEParams,
)
from crypto.payload import payload_nbytes
from crypto.randomness import RandomSource
from crypto.secagg import SecAggConfig, SecAggDevice, SecAggServer, StageCost, TooFewSurvivorsError
from crypto.secure_agg import (
    MODES,
    Aggregator,
    EncryptedAggregate,
    EncryptedVector,
    KeyHolder,
    SHEClient,
    SHEServer,
    UpdateEncryptor,
    make_secure_aggregation,
)
from crypto.she import PublicParams, SecretKey, add, decrypt, decrypt_many, encrypt, encrypt_many, keygen, mul_plain

__all__ = [
    "BFV_COMPACT",
    "BFV_PARAM_SETS",
    "BFV_WIDE",
    "DEFAULT_MIN_CONTRIBUTORS",
    "DEFAULT_PARAMS",
    "HIGH_THROUGHPUT_PARAMS",
    "MODES",
    "PAPER_PARAMS",
    "PARAM_SETS",
    "SCHEME_PARAM_SETS",
    "Aggregator",
    "BFVEncoder",
    "BFVEncryptor",
    "BFVLayout",
    "BFVParams",
    "BFVPublic",
    "BFVSecret",
    "CryptoError",
    "DecryptionAuthority",
    "EncryptedAggregate",
    "EncryptedVector",
    "FixedPointEncoder",
    "IntegrityError",
    "IntegrityKey",
    "IntegrityVerifier",
    "KeyHolder",
    "NonFiniteUpdateError",
    "OverflowRiskError",
    "PackedEncoder",
    "PayloadError",
    "PublicParams",
    "RandomSource",
    "ReplayError",
    "SHEClient",
    "SHEParams",
    "SHEServer",
    "SecAggConfig",
    "SecAggDevice",
    "SecAggServer",
    "SecretKey",
    "SlotLayout",
    "StageCost",
    "TooFewContributorsError",
    "TooFewSurvivorsError",
    "UpdateEncryptor",
    "add",
    "decrypt",
    "decrypt_many",
    "encrypt",
    "encrypt_many",
    "flatten_update",
    "keygen",
    "make_authority_aggregation",
    "make_secure_aggregation",
    "mul_plain",
    "payload_nbytes",
]
