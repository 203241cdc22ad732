"""Secure aggregation in the loop: one interface for encryption off, modeled and real, SHE and BFV.

A `Scheme` is what a run encrypts with: its parameter sets, fixed-point encoder, device costs
and what it protects; `BFV` and `SHE` are built in (registered as privacy-scheme plugins by
`sim.plugins`). `make_codec` returns the two halves of the protocol for a run:
- a `ClientCodec` held by the key holders (the clients): encrypts updates and decrypts aggregates;
- a server-side aggregator holding only public material (SHE's N; BFV's key-less TenSEAL
  context): weighted sums of payloads with integer weights.
With encryption off, payloads are plain float vectors and the same integer weights are used,
so on/off differ only by the fixed-point step. `describe_encryption` says what a run's
encryption protects, for its summary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from crypto import (
    BFV_PARAM_SETS,
    DEFAULT_PARAMS,
    PARAM_SETS,
    BFVEncoder,
    FixedPointEncoder,
    OverflowRiskError,
    PackedEncoder,
    make_secure_aggregation,
    payload_nbytes,
)

__all__ = [
    "BFV",
    "CRYPTO_COST",
    "SCHEMES",
    "SHE",
    "ClientCodec",
    "PlainAggregate",
    "PlainAggregator",
    "PlainVector",
    "Scheme",
    "choose_params",
    "describe_encryption",
    "encoder_for",
    "integer_weights",
    "make_codec",
    "scheme_of",
]

# Cost per parameter relative to encrypting at the paper's parameters, measured with
# benchmarks/crypto_bench.py on one core of the reference host (encrypt / decrypt, us per
# parameter: paper 2.0 / 1.0, high_throughput 0.3 / 0.2). Devices scale it by their speed.
# BFV: the benchmark's relative costs, measured in one run with SHE-paper (100,000 parameters,
# 10 clients: compact 0.40 / 0.24, wide 0.54 / 0.25 of SHE-paper encryption per parameter).
CRYPTO_COST = {
    ("paper", "encrypt"): 1.0,
    ("paper", "decrypt"): 0.5,
    ("high_throughput", "encrypt"): 0.15,
    ("high_throughput", "decrypt"): 0.1,
    ("compact", "encrypt"): 0.40,
    ("compact", "decrypt"): 0.24,
    ("wide", "encrypt"): 0.54,
    ("wide", "decrypt"): 0.25,
}


@dataclass(frozen=True)
class Scheme:
    """A privacy scheme updates are encrypted with: its parameter sets by name (`defaults`: those tried, cheapest
    first, when a run names none), the fixed-point encoder that packs values for it, the device cost of each
    parameter set and operation (`costs[(params, "encrypt"|"decrypt")]`, relative to encrypting one parameter at
    SHE's paper set, see `CRYPTO_COST`) and what it protects (`security`, for summaries)."""

    name: str
    param_sets: Mapping[str, Any]
    defaults: tuple[str, ...]
    encoder: type[FixedPointEncoder]
    costs: Mapping[tuple[str, str], float]
    security: str
    insecure: bool = field(default=False)  # the server can read updates (SHE: it recovers the key)

    def cost(self, params: str, op: str) -> float:
        """Device time of `op` per parameter at `params`, relative to SHE-paper encryption."""
        return self.costs[(params, op)]


BFV = Scheme(
    "bfv", BFV_PARAM_SETS, DEFAULT_PARAMS["bfv"], BFVEncoder,
    {k: v for k, v in CRYPTO_COST.items() if k[0] in BFV_PARAM_SETS},
    "128-bit against the server and eavesdroppers (RLWE, HE standard parameters); all clients share one key",
)
SHE = Scheme(
    "she", PARAM_SETS, DEFAULT_PARAMS["she"], PackedEncoder,
    {k: v for k, v in CRYPTO_COST.items() if k[0] in PARAM_SETS},
    "none against the server: it recovers the key from N and the ciphertexts it receives (`ppafl attack`); "
    "all clients share one key",
    insecure=True,
)
SCHEMES: dict[str, Scheme] = {s.name: s for s in (BFV, SHE)}  # the built-in schemes


@dataclass(frozen=True)
class PlainVector:
    """An unencrypted update (encryption off)."""

    values: np.ndarray

    @property
    def nbytes(self) -> int:
        return int(self.values.size) * 4  # sent as float32


@dataclass(frozen=True)
class PlainAggregate:
    total: np.ndarray
    weight_sum: int
    count: int


class PlainAggregator:
    """Server-side weighted sum of plaintext updates (encryption off)."""

    def weighted_sum(self, items: Sequence[PlainVector], weights: Sequence[int]) -> PlainAggregate:
        total = np.zeros(items[0].values.size, dtype=np.float64)
        for item, w in zip(items, weights, strict=True):
            total += float(w) * item.values
        return PlainAggregate(total, int(sum(weights)), len(items))


class Aggregator(Protocol):
    def weighted_sum(self, items: Sequence, weights: Sequence[int]): ...


class ClientCodec:
    """The key holders' half: encrypt an update, decrypt an aggregate to the weighted average."""

    def __init__(self, mode: str, key_holder=None) -> None:
        self.mode = mode
        self._key_holder = key_holder

    def encrypt(self, vec: np.ndarray):
        if self._key_holder is None:
            return PlainVector(np.asarray(vec, dtype=np.float32))
        return self._key_holder.encrypt(vec)

    def payload_nbytes(self, num_values: int) -> int:
        """Bytes of one update (or aggregate) on the wire: what the simulator charges to links."""
        if self._key_holder is None:
            return 4 * num_values
        return payload_nbytes(self._key_holder.encoder.layout)

    def decrypt_average(self, aggregate) -> np.ndarray:
        if self._key_holder is None:
            return aggregate.total / aggregate.weight_sum
        return self._key_holder.decrypt_average(aggregate)


def scheme_of(params: str) -> Scheme:
    """The built-in scheme a parameter-set name belongs to."""
    for scheme in SCHEMES.values():
        if params in scheme.param_sets:
            return scheme
    known = ", ".join(f"{s.name}: {', '.join(s.param_sets)}" for s in SCHEMES.values())
    raise ValueError(f"unknown parameter set {params!r}; known: {known}")


def encoder_for(
    scheme: Scheme, params: str, num_values: int, max_clients: int, weight_bits: int, scale_bits: int,
    value_bound: float,
) -> FixedPointEncoder:
    """The fixed-point encoder of `scheme`'s set `params` for these sums; OverflowRiskError if they do not fit."""
    return scheme.encoder(scheme.param_sets[params], num_values, max_clients, weight_bits, scale_bits, value_bound)


def choose_params(
    scheme: Scheme, params: str | None, num_values: int, max_clients: int, weight_bits: int, scale_bits: int,
    value_bound: float,
) -> str:
    """`params`, or (None) the cheapest of the scheme's default sets whose encoder holds sums of
    `max_clients` updates; OverflowRiskError (the last set's reason) when none does."""
    if params is not None:
        return params
    last: OverflowRiskError | None = None
    for name in scheme.defaults:
        try:
            encoder_for(scheme, name, num_values, max_clients, weight_bits, scale_bits, value_bound)
        except OverflowRiskError as exc:
            last = exc
            continue
        return name
    assert last is not None
    raise last


def make_codec(
    mode: str,
    num_values: int,
    max_clients: int,
    params: str = "high_throughput",  # ignored with mode "off"
    weight_bits: int = 8,
    scale_bits: int = 16,
    value_bound: float = 8.0,
    seed: int | None = None,
    workers: int = 1,
    scheme: Scheme | None = None,
) -> tuple[ClientCodec, Aggregator]:
    """Build both halves of secure aggregation for `mode` in {off, modeled, real}; `params` names a
    parameter set of `scheme` (default: the built-in scheme that has a set of that name); `workers` splits real
    crypto over processes."""
    if mode == "off":
        return ClientCodec("off"), PlainAggregator()
    scheme = scheme if scheme is not None else scheme_of(params)
    key_holder, aggregator = make_secure_aggregation(
        mode=mode,
        params=scheme.param_sets[params],
        num_values=num_values,
        max_clients=max_clients,
        weight_bits=weight_bits,
        scale_bits=scale_bits,
        value_bound=value_bound,
        seed=seed,
        workers=workers,
    )
    return ClientCodec(mode, key_holder), aggregator


_NO_PROTECTION = "none: updates travel in plaintext"


def describe_encryption(scheme: Scheme | None, params: str | None, aggregator: object) -> dict:
    """What a run's encryption is and protects (summary.json): scheme, the mode it ran in (a
    time-only run models real encryption), parameters, security level."""
    mode = getattr(aggregator, "mode", "off")
    if mode == "off" or params is None or scheme is None:
        return {"scheme": None, "mode": "off", "params": None, "security": _NO_PROTECTION}
    prm = scheme.param_sets[params]
    details = {k: list(v) if isinstance(v, tuple) else v for k, v in vars(prm).items()}
    plain_modulus = getattr(getattr(aggregator, "encoder", None), "plain_modulus", None)
    if plain_modulus is not None:
        details["plain_modulus"] = plain_modulus
    security = scheme.security + ("" if mode == "real" else "; modeled: this run did the integer arithmetic "
                                  "in the clear and charged the scheme's bytes and device time")
    return {"scheme": scheme.name, "mode": mode, "params": details, "security": security}


def integer_weights(weights: Sequence[float], weight_bits: int) -> list[int]:
    """Scale positive float weights to integers in [1, 2^weight_bits - 1], the largest at the top."""
    top = max(weights)
    if top <= 0:
        raise ValueError(f"aggregation weights must be positive, got {list(weights)}")
    scale = (1 << weight_bits) - 1
    return [max(1, round(w / top * scale)) for w in weights]
