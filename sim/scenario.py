"""Scenario files: YAML validated into a typed, immutable `Scenario`.

Every field has a default and a finite, physically meaningful range (see each
description), unknown keys are rejected with the nearest known name, combinations that
cannot mean anything are refused with the reason, and every error names the file (or the
`--set` it came from), the field path, the bad value and what is allowed. Files are read
with size, depth and duplicate-key limits (`sim.safe_yaml`). Command-line overrides
(`--set key.path=value`) are applied to the raw mapping and validated with it.
"""

from __future__ import annotations

import copy
import json
import reprlib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import Discriminator, Field, Tag, ValidationError, field_validator, model_validator

from crypto.params import DEFAULT_PARAMS, SCHEME_PARAM_SETS
from devices import (
    DEVICE_CLASSES,
    LINK_CLASSES,
    AvailabilityTraceSpec,
    ChurnSpec,
    DeviceProfile,
    ProfileError,
    SessionMeans,
    resolve_profile,
)
from devices.profiles import suggest
from devices.specs import BooleanNumberError, Section, check_hours, error_text, field_at, models_in
from fl.strategies import AgentSource, LateWeight, StalenessClock
from sim import safe_yaml
from sim.fleet import group_sizes

__all__ = [
    "MAX_TIME_S",
    "MODEL_DATASETS",
    "TRAIN_SAMPLES",
    "Scenario",
    "ScenarioError",
    "apply_overrides",
    "load_scenario",
    "parse_override",
    "read_scenario",
    "read_scenario_file",
    "scenario_from_dict",
]

MAX_TIME_S = 1.0e9  # ~32 years of simulated time: beyond any device's life, and float64 still resolves 0.1 us
MAX_EVALUATIONS = 100_000  # each evaluation tests the model on the test set
MIN_ROUND_DEADLINE_S = 1e-3  # below any network round trip: no job could finish in a round
# Which data sets each model takes (input shape), and each data set's training samples.
MODEL_DATASETS = {
    "mnist_2nn": ("mnist5k", "mnist"),
    "mnist_cnn": ("mnist5k", "mnist"),
    "cifar_cnn": ("cifar10",),
    "cifar_cnn3": ("cifar10",),
}
TRAIN_SAMPLES = {"mnist5k": 4000, "mnist": 60000, "cifar10": 50000}
SHARDS_PER_CLIENT = 2  # fl.partition's default, used by the shards partition


class ScenarioError(ValueError):
    """A scenario file or override is invalid; the message says where and how to fix it."""


class _Section(Section):
    """A scenario section (immutable, unknown keys rejected, numbers finite, booleans no numbers)."""


def _no_control_characters(text: str, what: str) -> str:
    bad = sorted({f"{ord(c):#04x}" for c in text if ord(c) < 32 or ord(c) == 127})
    if bad:
        raise ValueError(f"{what} holds control characters ({', '.join(bad)}); use printable text")
    return text


class DataConfig(_Section):
    dataset: Literal["mnist5k", "mnist", "cifar10"] = Field(
        "mnist5k", description="Data set: mnist5k (embedded, offline), mnist or cifar10 (need `root`)."
    )
    root: str | None = Field(
        None, min_length=1, max_length=4096, description="Data root in torchvision's layout (mnist, cifar10)."
    )
    download: bool = Field(False, description="Download the data set into `root` if it is missing.")
    partition: Literal["iid", "shards", "dirichlet"] = Field(
        "iid", description="How training samples are split over devices (shards = the paper's non-IID)."
    )
    alpha: float = Field(
        0.5,
        ge=1e-3,
        le=1e4,
        description="Dirichlet concentration (partition: dirichlet); 0.001 (one label per client) to 1e4 (iid).",
    )
    max_test_samples: int | None = Field(
        None, ge=1, le=10_000_000, description="Evaluate on the first N test samples only (faster); null = all."
    )

    @field_validator("root")
    @classmethod
    def _printable_root(cls, root: str | None) -> str | None:
        return None if root is None else _no_control_characters(root, "the path")


class TrainingConfig(_Section):
    model: Literal["mnist_2nn", "mnist_cnn", "cifar_cnn", "cifar_cnn3"] = Field(
        "mnist_2nn", description="Model architecture (the paper's names)."
    )
    epochs: int = Field(1, ge=1, le=1000, description="Local epochs E per update.")
    batch_size: int = Field(
        10, ge=1, le=1_000_000, description="Local mini-batch size B (larger than a shard = one batch)."
    )
    lr: float = Field(0.01, gt=0, le=10, description="Local SGD learning rate; at most 10 (SGD diverges far below).")
    prox_mu: float = Field(
        0.0, ge=0, le=1000, description="FedProx proximal term mu (0 = plain SGD); at most 1000."
    )


class FleetGroup(_Section):
    device: str = Field("rpi4", description="Device class: " + ", ".join(sorted(DEVICE_CLASSES)) + ".")
    link: str = Field("wifi", description="Link class: " + ", ".join(sorted(LINK_CLASSES)) + ".")
    share: float = Field(1.0, gt=0, le=1, description="Fraction of the fleet in this group.")
    compute: dict[str, Any] = Field(default_factory=dict, description="Overrides of the device's compute numbers.")
    battery: dict[str, Any] = Field(default_factory=dict, description="Overrides of the device's battery numbers.")
    link_overrides: dict[str, Any] = Field(default_factory=dict, description="Overrides of the link's numbers.")
    sessions: SessionMeans = Field(
        default_factory=SessionMeans,
        description="This group's mean online/offline sessions under failures.churn (null: the churn's, else the "
        "device class's) [s].",
    )

    @model_validator(mode="after")
    def _resolvable(self) -> FleetGroup:
        self.profile()  # unknown classes, bad overrides and missing trace files fail here
        return self

    def profile(self) -> DeviceProfile:
        """The group's device profile: its classes' numbers with the overrides applied."""
        return resolve_profile(
            self.device, self.link, {"compute": self.compute, "battery": self.battery, "link": self.link_overrides}
        )


class FleetConfig(_Section):
    num_devices: int = Field(20, ge=1, le=1_000_000, description="Number of devices (= FL clients).")
    groups: tuple[FleetGroup, ...] = Field(
        (FleetGroup(),), max_length=1000, description="Device/link mix; shares must sum to 1."
    )

    @model_validator(mode="after")
    def _shares_sum_to_one(self) -> FleetConfig:
        if not self.groups:
            raise ValueError("groups is empty: give at least one {device, link, share} entry")
        total = sum(g.share for g in self.groups)
        if abs(total - 1.0) > 1e-6:
            shares = ", ".join(f"{g.device}/{g.link}={g.share}" for g in self.groups)
            raise ValueError(f"group shares must sum to 1, got {total:g} ({shares}); rescale them")
        sizes = group_sizes([g.share for g in self.groups], self.num_devices)
        empty = [f"groups[{i}] ({g.device}/{g.link}, share {g.share:g})" for i, (g, n) in
                 enumerate(zip(self.groups, sizes)) if n == 0]
        if empty:
            need = max(round(1 / min(g.share for g in self.groups) + 0.5), len(self.groups))
            raise ValueError(
                f"{', '.join(empty[:3])}{' and more' if len(empty) > 3 else ''} would get no device of "
                f"{self.num_devices}; raise num_devices (to about {need}), raise the share or drop the group"
            )
        return self


class FailuresConfig(_Section):
    dropout_rate: float = Field(
        0.0, ge=0, le=1,
        description="Permanent departure: probability a device leaves for good during the run [0..1] (per-job "
        "failures: job_dropout).",
    )
    dropout_window_s: float | None = Field(
        None, gt=0, le=MAX_TIME_S, description="Leaving times are uniform in [0, window) s; null = stop.max_time_s."
    )
    job_dropout: float = Field(
        0.0, ge=0, le=1,
        description="Per-job dropout: probability an invited device's job fails before its upload completes, at a "
        "point drawn over its phases (phase uniform, then uniform within its work); the device stays in the "
        "pool [0..1].",
    )
    job_hazard_per_s: float = Field(
        0.0, ge=0, le=1,
        description="Per-job dropout as a hazard: failure rate per second of a job's work (transfers, compute; "
        "P(fail) = 1 - exp(-rate x work s)) [1/s].",
    )
    job_dropout_offline_s: float = Field(
        0.0, ge=0, le=MAX_TIME_S,
        description="After a per-job dropout the device is offline this long before it can be invited again [s].",
    )
    unavailability: float = Field(0.0, ge=0, lt=1, description="Probability a device declines an invitation.")
    daily_window: tuple[float, float] | None = Field(
        None, description="[start_hour, end_hour) of the day when devices are willing to work; null = always."
    )
    churn: ChurnSpec = Field(
        default_factory=ChurnSpec, description="On/off availability sessions drawn per device (docs/devices.md)."
    )
    availability_trace: AvailabilityTraceSpec = Field(
        default_factory=AvailabilityTraceSpec, description="On/off sessions replayed from a trace file."
    )

    @field_validator("daily_window")
    @classmethod
    def _hours(cls, window: tuple[float, float] | None) -> tuple[float, float] | None:
        return None if window is None else check_hours(window, "daily_window")


class _StrategyBase(_Section):
    """Settings every strategy has."""

    client_fraction: float = Field(
        0.1, gt=0, le=1, description="C: share of devices invited per round (concurrency for async strategies)."
    )
    round_deadline_s: float = Field(
        120.0, ge=MIN_ROUND_DEADLINE_S, le=MAX_TIME_S,
        description="Round deadline [s] (round-based strategies); async ones retry unfilled slots after "
        "min(this, 30) s, at least 1 s; 1 ms (below any network round trip) to 1e9 s.",
    )
    lr: float | None = Field(
        None, gt=0, le=10, allow_inf_nan=False,
        description="Local SGD learning rate under this strategy; null = training.lr (to reproduce an lr confound).",
    )
    prox_mu: float | None = Field(
        None, ge=0, le=100, allow_inf_nan=False,
        description="FedProx mu under this strategy; null = the preset's (fedprox_straggler: 0.01), else training.prox_mu.",
    )

    def local_lr(self, training: TrainingConfig) -> float:
        """The learning rate clients train with under this strategy."""
        return training.lr if self.lr is None else self.lr

    def local_prox_mu(self, training: TrainingConfig) -> float:
        """The FedProx mu clients train with under this strategy."""
        return training.prox_mu if self.prox_mu is None else self.prox_mu


class _RoundBasedConfig(_StrategyBase):
    participation: Literal["fresh", "slots"] = Field(
        "fresh",
        description="fresh = invite C*N idle devices every round, beside those still delayed; slots = C*N slots all "
        "taking part: a delayed job keeps its slot, the free slots go to idle devices drawn anew each round.",
    )


class FedAvgConfig(_RoundBasedConfig):
    name: Literal["fedavg"] = Field("fedavg", description="Aggregation strategy.")
    weight_by_samples: bool = Field(True, description="Weight clients by their sample counts.")


class PPAFLConfig(_RoundBasedConfig):
    name: Literal["ppafl"] = Field("ppafl", description="Aggregation strategy.")
    delay_threshold: int = Field(
        6, ge=0, le=1000, description="Late updates and agents staler than this many rounds get weight 0."
    )
    late_weight: LateWeight = Field(
        "halving", description="Weight of a late update (and of an agent) of staleness s: halving = 2^-s, full = 1, "
        "zero = 0 (dropped, the reference code's straggler baselines).",
    )
    agents: bool = Field(True, description="Represent clients still in flight by update agents.")
    agent_source: AgentSource = Field(
        "last_update",
        description="last_update = the client's last delivered update (physical); retrain = the delayed client "
        "retrained every round from the model its job started on, at no simulated cost (a simulation shortcut, "
        "as the reference code does).",
    )
    agents_until_version: int | None = Field(
        None, ge=1, le=10**9, description="Agents only while the global version is below this; null = always."
    )
    staleness_clock: StalenessClock = Field(
        "version_lag",
        description="s of a late update: version_lag = versions since it started; lag_plus_one = that + 1 for any "
        "late or held-back update, counted from the delay's start (the reference code: a delay of 1 weighs 1/2).",
    )
    weight_by_samples: bool = Field(True, description="Weight clients by their sample counts.")


class FedAsyncConfig(_StrategyBase):
    name: Literal["fedasync"] = Field("fedasync", description="Aggregation strategy.")
    alpha: float = Field(0.6, gt=0, le=1, description="Mixing rate alpha.")
    staleness_fn: Literal["constant", "polynomial", "hinge"] = Field(
        "polynomial", description="Staleness function s(t - tau)."
    )
    staleness_a: float = Field(
        0.5, ge=0, le=100, allow_inf_nan=False, description="Exponent (polynomial) or slope (hinge) a."
    )
    staleness_b: int = Field(4, ge=0, le=10_000_000, description="Hinge knee b [versions].")


class FedBuffConfig(_StrategyBase):
    name: Literal["fedbuff"] = Field("fedbuff", description="Aggregation strategy.")
    buffer_size: int = Field(5, ge=1, le=10**6, description="Aggregate every K arrivals.")
    server_lr: float = Field(
        1.0, gt=0, le=10, description="Server learning rate eta_g; at most 10, like training.lr."
    )
    weight_by_samples: bool = Field(True, description="Weight clients by their sample counts.")


@dataclass(frozen=True)
class Preset:
    """A named PPAFL setting: what it reproduces, its fixed settings, and its FedProx mu (None: training's)."""

    reproduces: str
    settings: dict[str, Any]
    prox_mu: float | None = None


_REFERENCE = {"staleness_clock": "lag_plus_one", "weight_by_samples": False}
_STRAGGLER = {**_REFERENCE, "late_weight": "zero", "agents": False}
_RETRAINED = {**_REFERENCE, "agents": True, "agent_source": "retrain"}
PRESETS: dict[str, Preset] = {
    "fedavg_straggler": Preset("the reference code's 'FedAvg & straggler': late updates dropped, no agents", _STRAGGLER),
    "fedprox_straggler": Preset(
        "the reference code's 'FedProx & straggler' as its name says (its proximal term was commented out)",
        _STRAGGLER, prox_mu=0.01,
    ),
    "asyfl": Preset(
        "the reference code's AsyFL: 2^-s for late updates and agents, threshold 3, agents only in rounds < 20",
        {**_RETRAINED, "late_weight": "halving", "delay_threshold": 3, "agents_until_version": 20},
    ),
    "ppflpro": Preset(
        "the reference code's MNIST 'PPFLPro' variant: weight 1 for late updates and agents",
        {**_RETRAINED, "late_weight": "full", "delay_threshold": 6, "agents_until_version": 100},
    ),
    "ppafl_reference": Preset(
        "the paper's scheme as the reference code runs it: 2^-s, threshold 6, agents retrained, only in rounds < 100",
        {**_RETRAINED, "late_weight": "halving", "delay_threshold": 6, "agents_until_version": 100},
    ),
}


class PresetConfig(_RoundBasedConfig):
    union_tag: ClassVar[str] = "preset"
    name: Literal["fedavg_straggler", "fedprox_straggler", "asyfl", "ppflpro", "ppafl_reference"] = Field(
        "ppafl_reference", description="A named setting of ppafl (see 'Strategy presets'); its settings are fixed."
    )

    @model_validator(mode="before")
    @classmethod
    def _fixed(cls, raw: Any) -> Any:
        fixed = sorted(set(raw) & set(PPAFLConfig.model_fields) - set(cls.model_fields)) if isinstance(raw, dict) else []
        if fixed:
            preset = PRESETS[raw["name"]]
            given = ", ".join(f"{k}: {json.dumps(v)}" for k, v in preset.settings.items())
            raise ValueError(
                f"{raw['name']} is a preset with fixed settings ({given}); to change {', '.join(fixed)}, "
                f"write strategy.name: ppafl with those settings and yours"
            )
        return raw

    def resolved(self) -> PPAFLConfig:
        """The ppafl settings this preset stands for (with this section's common fields)."""
        common = self.model_dump(exclude={"name"})
        return PPAFLConfig(**common, **PRESETS[self.name].settings)

    def local_prox_mu(self, training: TrainingConfig) -> float:
        preset = PRESETS[self.name].prox_mu
        if self.prox_mu is not None:
            return self.prox_mu
        return training.prox_mu if preset is None else preset


assert set(PRESETS) == set(get_args(PresetConfig.model_fields["name"].annotation)), "PRESETS and PresetConfig.name"
STRATEGY_CONFIGS: dict[str, type[_StrategyBase]] = {
    "fedavg": FedAvgConfig, "ppafl": PPAFLConfig, "fedasync": FedAsyncConfig, "fedbuff": FedBuffConfig,
    "preset": PresetConfig,
}
ROUND_BASED = ("fedavg", "ppafl", *PRESETS)


def _strategy_tag(value: Any) -> str | None:
    """The union member of a strategy section: its name (default ppafl), or 'preset' for a preset's name."""
    name = value.get("name", "ppafl") if isinstance(value, dict) else getattr(value, "name", None)
    if not isinstance(name, str):
        return None
    return "preset" if name in PRESETS else name


StrategyConfig = Annotated[
    Annotated[FedAvgConfig, Tag("fedavg")]
    | Annotated[PPAFLConfig, Tag("ppafl")]
    | Annotated[FedAsyncConfig, Tag("fedasync")]
    | Annotated[FedBuffConfig, Tag("fedbuff")]
    | Annotated[PresetConfig, Tag("preset")],
    Discriminator(_strategy_tag),
]
"""The `strategy` section: one settings class per strategy name (presets share one)."""


class InjectedDelayConfig(_Section):
    fraction: float = Field(
        0.0, ge=0, lt=1,
        description="The paper's setting: share of jobs (independent) or of a round's slots (batch, topup) whose "
        "update is held back; below 1 (with every update held back an asynchronous run could never make the "
        "version that releases one).",
    )
    model: Literal["independent", "batch", "topup"] = Field(
        "independent",
        description="independent = each job with probability `fraction`; batch = the reference code's scheme: when no "
        "job is delayed, round(fraction*C*N) of the round's invitees at once (from round 2 on); topup = its "
        "baselines: every round the delayed slots are topped up towards that number.",
    )
    min_rounds: int = Field(
        1, ge=0, le=1000,
        description="Shortest delay [global versions]; 0 = arrives in its own round but counts as held back "
        "(the reference code's delay 1).",
    )
    max_rounds: int = Field(8, ge=1, le=1000, description="Longest delay [global versions]; uniform in between.")

    @model_validator(mode="after")
    def _range(self) -> InjectedDelayConfig:
        if self.min_rounds > self.max_rounds:
            raise ValueError(f"min_rounds {self.min_rounds} > max_rounds {self.max_rounds}; swap them")
        return self


class EncryptionConfig(_Section):
    scheme: Literal["bfv", "she"] = Field(
        "bfv",
        description="bfv = BFV lattice encryption (RLWE, 128-bit, TenSEAL); she = the paper's SHE, whose key "
        "the server can recover from what it holds (docs/threat-model.md). Omitted: the scheme of `params`, else bfv.",
    )
    mode: Literal["off", "modeled", "real"] = Field(
        "modeled",
        description="off = plaintext; real = ciphertexts of `scheme`; modeled = the same integers, bytes and "
        "device time, no crypto.",
    )

    @field_validator("mode", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        return "off" if value is False else value  # YAML 1.1 reads a bare `off` as false

    params: str | None = Field(
        None,
        description="Parameter set. she: paper (k0 2048, k2 160) or high_throughput (enlarged L); bfv: compact "
        "(n 8192, 60-bit q, 16 B/value) or wide (120-bit q, 32 B/value); null = the cheapest that holds the "
        "run's largest aggregate ("
        + "; ".join(f"{s}: {' then '.join(p)}" for s, p in DEFAULT_PARAMS.items())
        + "; summary.json names the one used).",
    )
    scale_bits: int = Field(16, ge=4, le=40, description="Fixed-point scale 2^scale_bits.")
    value_bound: float = Field(
        8.0, gt=0, le=1e6, description="Largest |parameter| an update may hold; at most 1e6 (trained weights are O(1))."
    )
    weight_bits: int = Field(8, ge=1, le=24, description="Integer aggregation weights lie in [1, 2^weight_bits).")
    workers: int = Field(
        1, ge=1, le=256,
        description="Processes that split real encryption, aggregation and decryption by ciphertext (same "
        "results for any number; with the process or ray executor clients already encrypt in parallel) [count].",
    )

    @model_validator(mode="before")
    @classmethod
    def _scheme_and_params_defaults(cls, data: Any) -> Any:
        """An omitted scheme is the one `params` names (older files name only SHE's params), else bfv."""
        if not isinstance(data, dict) or data.get("scheme") is not None:
            return data
        params = data.get("params")
        named = isinstance(params, str) and next((s for s, sets in SCHEME_PARAM_SETS.items() if params in sets), None)
        return {**data, "scheme": named or "bfv"}

    @model_validator(mode="after")
    def _params_of_the_scheme(self) -> EncryptionConfig:
        known = SCHEME_PARAM_SETS[self.scheme]
        if self.params is not None and self.params not in known:
            owner = next((s for s, sets in SCHEME_PARAM_SETS.items() if self.params in sets), None)
            hint = f" ({self.params!r} is a {owner} parameter set: set encryption.scheme to {owner})" if owner else ""
            raise ValueError(
                f"encryption.params {self.params!r} is not a {self.scheme} parameter set; use one of "
                f"{', '.join(known)}{hint}"
            )
        return self


class EvaluationConfig(_Section):
    interval_s: float | None = Field(
        60.0,
        gt=0,
        le=MAX_TIME_S,
        description="Evaluate the global model every this many simulated s; null = off "
        f"(at most {MAX_EVALUATIONS:,} evaluations per run).",
    )
    every_versions: int | None = Field(
        None, ge=1, le=10_000_000, description="Also evaluate every N global versions; null = off."
    )
    target_accuracy: float = Field(
        0.9, gt=0, le=1, description="Accuracy whose first-reached time is reported (does not stop the run)."
    )


class StopConfig(_Section):
    max_time_s: float = Field(
        3600.0, gt=0, le=MAX_TIME_S, description="Simulated time limit in s; at most 1e9 (~32 years)."
    )
    max_versions: int | None = Field(
        None, ge=1, le=10_000_000, description="Stop after this many global versions (the paper runs 1,000)."
    )
    target_accuracy: float | None = Field(None, gt=0, le=1, description="Stop once test accuracy reaches this.")


class Scenario(_Section):
    """A complete, validated simulation scenario."""

    name: str = Field("scenario", min_length=1, max_length=200, description="Name used in outputs.")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Seed of every random stream in the run (32 bits).")
    time_only: bool = Field(False, description="Skip gradient work: study timing and energy of large fleets.")
    data: DataConfig = DataConfig()
    training: TrainingConfig = TrainingConfig()
    fleet: FleetConfig = FleetConfig()
    failures: FailuresConfig = FailuresConfig()
    strategy: StrategyConfig = Field(default_factory=PPAFLConfig)
    injected_delay: InjectedDelayConfig = InjectedDelayConfig()
    encryption: EncryptionConfig = EncryptionConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    stop: StopConfig = StopConfig()

    @field_validator("name")
    @classmethod
    def _printable_name(cls, name: str) -> str:
        return _no_control_characters(name, "the name")

    @model_validator(mode="after")
    def _meaningful(self) -> Scenario:
        """Refuse combinations that cannot mean anything, saying why."""
        model, dataset = self.training.model, self.data.dataset
        if dataset not in MODEL_DATASETS[model]:
            fitting = [m for m, sets in MODEL_DATASETS.items() if dataset in sets]
            raise ValueError(
                f"training.model {model!r} takes {' or '.join(MODEL_DATASETS[model])} inputs, not {dataset!r}: "
                f"use training.model {' or '.join(fitting)}, or another data.dataset"
            )
        evaluation, stop = self.evaluation, self.stop
        if stop.target_accuracy is not None and self.time_only:
            raise ValueError("stop.target_accuracy is set but time_only runs train nothing, so it is never reached; "
                             "set stop.target_accuracy to null or time_only to false")
        if stop.target_accuracy is not None and evaluation.interval_s is None and evaluation.every_versions is None:
            raise ValueError("stop.target_accuracy is set but evaluation is off (interval_s and every_versions null), "
                             "so accuracy is only measured at the start and the end; set evaluation.interval_s")
        every, versions = evaluation.every_versions, stop.max_versions
        if every is not None and versions is not None and versions / every > MAX_EVALUATIONS:
            raise ValueError(
                f"evaluation.every_versions {every} makes {versions // every:,} evaluations over stop.max_versions "
                f"{versions:,} (at most {MAX_EVALUATIONS:,}): use every_versions >= {-(-versions // MAX_EVALUATIONS)}"
            )
        if evaluation.interval_s is not None and stop.max_time_s / evaluation.interval_s > MAX_EVALUATIONS:
            raise ValueError(
                f"evaluation.interval_s {evaluation.interval_s:g} s makes {stop.max_time_s / evaluation.interval_s:.3g} "
                f"evaluations over stop.max_time_s {stop.max_time_s:g} s (at most {MAX_EVALUATIONS:,}, each "
                + ("a metrics row" if self.time_only else "tests the model on the test set")
                + f"): use interval_s >= {stop.max_time_s / MAX_EVALUATIONS:.3g} or null"
            )
        if not self.time_only:
            n, samples = self.fleet.num_devices, TRAIN_SAMPLES[dataset]
            per_client = SHARDS_PER_CLIENT if self.data.partition == "shards" else 1
            if n * per_client > samples:
                raise ValueError(
                    f"fleet.num_devices {n} needs {n * per_client:,} training samples for the "
                    f"{self.data.partition} partition (every client gets {per_client} "
                    f"{'shards' if per_client > 1 else 'sample'} at least) but {dataset} has {samples:,}: use at "
                    f"most {samples // per_client:,} devices, another data set, or time_only: true"
                )
        return self

    @model_validator(mode="after")
    def _delays_need_rounds(self) -> Scenario:
        if self.injected_delay.model != "independent" and self.strategy.name not in ROUND_BASED:
            raise ValueError(
                f"injected_delay.model {self.injected_delay.model} draws delays per round, and {self.strategy.name} "
                f"has no rounds; use injected_delay.model: independent, or a round-based strategy ({', '.join(ROUND_BASED)})"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        """The scenario as plain data (JSON/YAML safe)."""
        return self.model_dump(mode="json")


_SHORT = reprlib.Repr()  # bad values are shown short: a huge input must not make a huge message
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxstring, _SHORT.maxother = 2, 4, 4, 60, 60
_PROFILE_SECTIONS = {"compute": "compute", "battery": "battery", "link": "link_overrides"}


def _strategy_owners() -> dict[str, list[str]]:
    """Each strategy-specific field and the strategies it belongs to ('the presets' for the presets)."""
    owners: dict[str, list[str]] = {}
    for tag, cls in STRATEGY_CONFIGS.items():
        for field in set(cls.model_fields) - set(_StrategyBase.model_fields) - {"name"}:
            owners.setdefault(field, []).append("the presets" if tag == "preset" else tag)
    return owners


def _strategy_problem(e: Any, loc: tuple[Any, ...]) -> tuple[tuple[Any, ...], Any, str] | None:
    """(location, value, message) for the `strategy` union's own errors: an unknown name, another strategy's field."""
    if e["type"] in ("union_tag_invalid", "union_tag_not_found"):
        names = [repr(t) for t in STRATEGY_CONFIGS if t != "preset"]
        known = f"known: {', '.join(names)}; presets: {', '.join(map(repr, PRESETS))}"
        if not isinstance(e["input"], dict):
            return ("strategy",), e["input"], f"must be a mapping with a strategy name ({known})"
        return ("strategy", "name"), e["input"].get("name"), f"not a strategy ({known})"
    if e["type"] != "extra_forbidden" or len(loc) < 3:
        return None
    field = str(loc[-1])
    owners = [o for o in _strategy_owners().get(field, []) if o != loc[1]]
    if not owners:
        return None
    names = [o for o in owners if o != "the presets"]
    where = f" (strategy.name: {' or '.join(names)})" if names else ""
    which = "a preset" if loc[1] == "preset" else loc[1]
    return ("strategy", *loc[2:]), _NO_VALUE, f"not a setting of {which}; it belongs to {', '.join(owners)}{where}"


def _shown(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """An error location as the user wrote it: without the strategy union's tag."""
    return (loc[0], *loc[2:]) if len(loc) > 1 and loc[0] == "strategy" and loc[1] in STRATEGY_CONFIGS else loc


_NO_VALUE = object()  # a problem with a key, a section or the whole scenario: its message names the fields


def _problems(err: ValidationError) -> list[tuple[tuple[Any, ...], Any, str]]:
    """(location, value or _NO_VALUE, message) per problem, a device profile's problems at their own place."""
    out: list[tuple[tuple[Any, ...], Any, str]] = []
    errors = err.errors()
    for e in errors:
        loc = tuple(e["loc"])
        special = _strategy_problem(e, loc) if loc[:1] == ("strategy",) else None
        if special is not None:
            out.append(special)
            continue
        if e["type"] == "too_short" and any(tuple(o["loc"])[: len(loc)] == loc and o is not e for o in errors):
            continue  # "no item left after validation": its items' own errors say why
        cause = (e.get("ctx") or {}).get("error")
        if isinstance(cause, ProfileError) and cause.problems:
            for path, value, msg in cause.problems:
                section, *rest = path.split(".")
                where = loc + (_PROFILE_SECTIONS.get(section, section), *rest)
                out.append((where, value if rest and not msg.startswith("unknown") else _NO_VALUE, msg))
        elif isinstance(cause, BooleanNumberError):
            out.append((loc + (cause.field,), cause.value, "a boolean where a number belongs; write a number"))
        elif e["type"] == "extra_forbidden":
            holder, _ = field_at(Scenario, loc)
            known = list(holder.model_fields) if holder is not None else []
            hint = suggest(str(loc[-1]), known, list_known=False) if known else "check its spelling"
            out.append((loc, _NO_VALUE, f"unknown key; {hint} (see README 'Scenario fields')"))
        else:
            field = field_at(Scenario, loc)[1]
            leaf = field is not None and not models_in(field.annotation)
            out.append((loc, e.get("input") if leaf else _NO_VALUE, error_text(e, field)))
    return [(_shown(where), value, msg) for where, value, msg in out]


def _format_errors(err: ValidationError, source: str, overrides: list[str]) -> str:
    parsed = []
    for text in overrides:
        try:
            parsed.append((tuple(parse_override(text)[0]), text))
        except ScenarioError:
            continue
    problems = _problems(err)
    lines, blamed_any, blamed_all = [], False, True
    for loc, value, msg in problems:
        names = tuple(str(p) for p in loc)
        blamed = [t for o, t in parsed if _caused_by(o, names, msg)]
        blamed_any, blamed_all = blamed_any or bool(blamed), blamed_all and bool(blamed)
        origin = f"--set {_short_text(blamed[-1])}: " if blamed else ""
        shown = "" if value is _NO_VALUE else f" = {_SHORT.repr(value)}"
        lines.append(f"  - {origin}{'.'.join(names) or 'scenario'}{shown}: {msg}")
    what = "invalid --set" if blamed_all else "invalid scenario with its --set" if blamed_any else "invalid scenario"
    count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
    return "\n".join([f"{source}: {what} ({count}):", *lines])


def _short_text(text: str, most: int = 100) -> str:
    return text if len(text) <= most else f"{text[: most - 20]}...{text[-17:]}"


def _caused_by(override: tuple[str, ...], loc: tuple[str, ...], msg: str) -> bool:
    """Whether the problem at `loc` comes from the `--set` of `override`: it set that field, or one the
    message names inside that section."""
    if loc[: len(override)] == override:
        return True
    return override[: len(loc)] == loc and (".".join(override) in msg or override[-1] in msg)


def scenario_from_dict(raw: Any, source: str = "<scenario>", overrides: list[str] | None = None) -> Scenario:
    """Validate a raw mapping into a Scenario, or raise ScenarioError naming each problem.

    `overrides` are the `--set` texts already applied to `raw`: a problem in a field one of
    them set is reported as that override's.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ScenarioError(f"{source}: a scenario must be a mapping of sections, got {type(raw).__name__}")
    try:
        return Scenario.model_validate(raw)
    except ValidationError as err:
        raise ScenarioError(_format_errors(err, source, overrides or [])) from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split `key.path=value` into the path and a YAML-parsed value."""
    key, sep, value = text.partition("=")
    path = [p.strip() for p in key.strip().split(".")]
    if not sep or not key.strip() or any(not p for p in path):
        raise ScenarioError(f"--set {_short_text(text)!r}: expected KEY.PATH=VALUE, e.g. failures.dropout_rate=0.2")
    try:
        parsed = safe_yaml.load(value) if value.strip() else None
    except safe_yaml.YAMLLimitError as exc:
        raise ScenarioError(f"--set {_short_text(text)!r}: {exc}") from None
    return path, parsed


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of `raw` with each `key.path=value` override applied."""
    out = copy.deepcopy(raw)
    for text in overrides:
        path, value = parse_override(text)
        node: Any = out
        for i, part in enumerate(path):
            where = ".".join(path[: i + 1])
            last = i == len(path) - 1
            if isinstance(node, list):  # an entry of a list, e.g. fleet.groups.0.share
                if not (part.isdigit() and int(part) < len(node)):
                    raise ScenarioError(
                        f"--set {_short_text(text)!r}: {'.'.join(path[:i])} has {len(node)} entries, numbered 0 to "
                        f"{len(node) - 1}; {part!r} is not one of them"
                    )
                part_key: Any = int(part)
            elif isinstance(node, dict):
                part_key = part
                if not last and node.get(part) is None:
                    if path[i + 1].isdigit():
                        raise ScenarioError(
                            f"--set {_short_text(text)!r}: {where} is not in the scenario file, so it has no entry "
                            f"{path[i + 1]}: set the whole list, e.g. --set '{where}=[{{...}}]'"
                        )
                    node[part] = {}
            else:
                raise ScenarioError(f"--set {_short_text(text)!r}: {'.'.join(path[:i])} is a value, not a section")
            if last:
                node[part_key] = value
            else:
                node = node[part_key]
                if not isinstance(node, dict | list):
                    raise ScenarioError(f"--set {_short_text(text)!r}: {where} is a value, not a section")
    return out


def read_scenario_file(path: str | Path) -> dict[str, Any]:
    """Read a scenario YAML file into a raw mapping, with one clear line for a missing, huge or broken file."""
    p = Path(path)
    try:
        if p.is_dir():
            raise ScenarioError(f"{p}: is a folder, not a scenario file (see scenarios/ for examples)")
        if p.exists() and not p.is_file():
            raise ScenarioError(f"{p}: is not a regular file (a device or a pipe); give a scenario YAML file")
        if not p.is_file():
            raise ScenarioError(f"{p}: scenario file not found (see scenarios/ for examples)")
        size = p.stat().st_size
        if size > safe_yaml.MAX_BYTES:
            raise ScenarioError(
                f"{p}: {size / 2**20:.1f} MiB is more than a scenario file may hold "
                f"({safe_yaml.MAX_BYTES // 2**20} MiB); traces go in their own files"
            )
        text = p.read_bytes()[: safe_yaml.MAX_BYTES + 1].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"{p}: not a UTF-8 text file (byte {exc.start})") from None
    except (OSError, ValueError) as exc:
        if isinstance(exc, ScenarioError):
            raise
        raise ScenarioError(f"{p}: cannot read the scenario file ({exc.strerror if isinstance(exc, OSError) else exc})") from None
    try:
        raw = safe_yaml.load(text.removeprefix("\ufeff"))
    except safe_yaml.YAMLLimitError as exc:
        raise ScenarioError(f"{p}: {exc}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ScenarioError(f"{p}: a scenario must be a mapping of sections, got {type(raw).__name__}")
    return raw


def _resolve_paths(raw: dict[str, Any], base: Path) -> dict[str, Any]:
    """Make the file paths a scenario names (data root, traces) relative to its own folder."""

    def fix(node: Any, key: str) -> None:
        value = node.get(key) if isinstance(node, dict) else None
        if isinstance(value, str) and value and "\0" not in value and not Path(value).expanduser().is_absolute():
            node[key] = str((base / Path(value).expanduser()).resolve())

    fix(raw.get("data"), "root")
    groups = (raw.get("fleet") or {}).get("groups") if isinstance(raw.get("fleet"), dict) else None
    for g in groups if isinstance(groups, list) else []:
        if isinstance(g, dict):
            fix(g.get("link_overrides"), "bandwidth_trace")
            battery = g.get("battery")
            fix(battery.get("recharge") if isinstance(battery, dict) else None, "trace_path")
    failures = raw.get("failures")
    fix(failures.get("availability_trace") if isinstance(failures, dict) else None, "path")
    return raw


def read_scenario(path: str | Path) -> dict[str, Any]:
    """Read a scenario file into a raw mapping whose relative paths (data.root, trace files)
    are resolved from the file's folder, as every reader of a scenario file needs them."""
    return _resolve_paths(read_scenario_file(path), Path(path).parent)


def load_scenario(path: str | Path, overrides: list[str] | None = None) -> Scenario:
    """Load, override and validate a scenario file.

    Relative paths inside the file (data.root, trace files) are taken relative to the
    file's folder; relative paths given with `--set` are taken relative to the working
    directory.
    """
    overrides = list(overrides or [])
    raw = apply_overrides(read_scenario(path), overrides)
    return scenario_from_dict(raw, source=str(path), overrides=overrides)
