"""The errors raised by the crypto package; all are `CryptoError`, itself a `ValueError`."""

from __future__ import annotations

__all__ = ["CryptoError", "NonFiniteUpdateError", "OverflowRiskError", "PayloadError"]


class CryptoError(ValueError):
    """Any refusal by the crypto package: bad parameters, bad input, bad payload."""


class OverflowRiskError(CryptoError):
    """A value, weight, client count or parameter choice could overflow a slot, L/2 or p."""


class PayloadError(CryptoError):
    """A ciphertext payload is truncated, tampered with, of another key or of another layout."""


class NonFiniteUpdateError(CryptoError):
    """An update holds NaN or infinity, which fixed-point encoding cannot represent."""
