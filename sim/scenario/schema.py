"""The scenario schema: YAML validated into a typed, immutable `Scenario`.

Every field has a default and a finite, physically meaningful range (see each
description), unknown keys are rejected with the nearest known name, combinations that
cannot mean anything are refused with the reason. Components are named by their
registered names (`sim.plugins`): the strategy, the model, the data set, device and link
classes, failure sources and the privacy scheme; their own settings are validated by
their settings classes (`sim.scenario.sections`). Errors are put in the user's terms by
`sim.scenario.errors`; files and `--set` are read by `sim.scenario.loading`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, SerializeAsAny, WrapValidator, field_validator, model_validator

from devices import AvailabilityTraceSpec, ChurnSpec, DeviceProfile, SessionMeans, resolve_profile
from devices.profiles import group_sizes
from devices.specs import Section, check_hours
from fl.strategies import MAX_TIME_S, PPAFLConfig, StrategyConfig
from sim.plugins import DATASETS, DEVICE_CLASSES, FAILURES, LINK_CLASSES, MODELS, PRIVACY_SCHEMES, STRATEGIES
from sim.plugins.kinds import DatasetInfo
from sim.plugins.registry import load_entry_points
from sim.scenario.sections import validate_plugin_section

__all__ = [
    "MAX_EVALUATIONS",
    "MAX_TIME_S",
    "DataConfig",
    "EncryptionConfig",
    "EvaluationConfig",
    "FailureSource",
    "FailuresConfig",
    "FleetConfig",
    "FleetGroup",
    "InjectedDelayConfig",
    "Scenario",
    "StopConfig",
    "TrainingConfig",
]

MAX_EVALUATIONS = 100_000  # each evaluation tests the model on the test set
SHARDS_PER_CLIENT = 2  # fl.partition's default, used by the shards partition


class _Section(Section):
    """A scenario section (immutable, unknown keys rejected, numbers finite, booleans no numbers)."""


def _no_control_characters(text: str, what: str) -> str:
    bad = sorted({f"{ord(c):#04x}" for c in text if ord(c) < 32 or ord(c) == 127})
    if bad:
        raise ValueError(f"{what} holds control characters ({', '.join(bad)}); use printable text")
    return text


class DataConfig(_Section):
    dataset: str = Field(
        "mnist5k",
        description="Data set, by registered name: mnist5k (embedded, offline), mnist or cifar10 (need `root`), npz "
        "or csv (a file: `options.path`), or a plugin's (docs/extending.md).",
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
    options: dict[str, Any] = Field(
        default_factory=dict, description="The data set's own settings (npz, csv: path, ...; see docs/extending.md)."
    )

    @field_validator("root")
    @classmethod
    def _printable_root(cls, root: str | None) -> str | None:
        return None if root is None else _no_control_characters(root, "the path")

    _info: DatasetInfo | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _options_of_the_dataset(self) -> DataConfig:
        settings = validate_plugin_section(DATASETS, self.dataset, self.options, at=("options",))
        object.__setattr__(self, "options", {} if settings is None else settings.model_dump(mode="json"))
        self._info = DATASETS.get(self.dataset).describe(self.options, self.root)  # a file data set: read it now
        return self

    def info(self) -> DatasetInfo:
        """Sample shape, classes and sizes of this data set (read from its file for npz and csv)."""
        if self._info is None:
            self._info = DATASETS.get(self.dataset).describe(self.options, self.root)
        return self._info


class TrainingConfig(_Section):
    model: str = Field(
        "mnist_2nn",
        description="Model, by registered name: the paper's mnist_2nn, mnist_cnn, cifar_cnn, cifar_cnn3; mlp (any "
        "data set); or a plugin's.",
    )
    model_options: dict[str, Any] = Field(
        default_factory=dict, description="The model's own settings (mlp: hidden; a plugin's: see its docs)."
    )
    epochs: int = Field(1, ge=1, le=1000, description="Local epochs E per update.")
    batch_size: int = Field(
        10, ge=1, le=1_000_000, description="Local mini-batch size B (larger than a shard = one batch)."
    )
    lr: float = Field(0.01, gt=0, le=10, description="Local SGD learning rate; at most 10 (SGD diverges far below).")
    prox_mu: float = Field(
        0.0, ge=0, le=1000, description="FedProx proximal term mu (0 = plain SGD); at most 1000."
    )

    @model_validator(mode="after")
    def _options_of_the_model(self) -> TrainingConfig:
        settings = validate_plugin_section(MODELS, self.model, self.model_options, at=("model_options",))
        object.__setattr__(self, "model_options", {} if settings is None else settings.model_dump(mode="json"))
        return self


class FleetGroup(_Section):
    device: str = Field(
        "rpi4", description="Device class: " + ", ".join(sorted(DEVICE_CLASSES.names())) + ", or a plugin's."
    )
    link: str = Field("wifi", description="Link class: " + ", ".join(sorted(LINK_CLASSES.names())) + ", or a plugin's.")
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
        load_entry_points()  # installed packages' device and link classes
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


class FailureSource(_Section):
    """An entry of `failures.sources`: a registered failure source and its settings."""

    name: str = Field(description="The failure source's registered name.")
    settings: dict[str, Any] = Field(default_factory=dict, description="Its settings (validated by its class).")


def _failure_source(raw: Any, _handler: Any) -> FailureSource:
    """An entry of `failures.sources`: {name: ..., settings...}, validated by the named source's settings class."""
    if isinstance(raw, FailureSource):
        return raw
    if not isinstance(raw, dict):
        raise ValueError("each failure source is a mapping {name: ..., its settings}")  # noqa: TRY004  (pydantic: ValueError)
    rest = {k: v for k, v in raw.items() if k != "name"}
    settings = validate_plugin_section(FAILURES, raw.get("name"), rest)
    return FailureSource(name=raw["name"], settings={} if settings is None else settings.model_dump(mode="json"))


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

    sources: tuple[Annotated[FailureSource, WrapValidator(_failure_source)], ...] = Field(
        (), max_length=100,
        description="More failure sources, each {name: ..., its settings}: a registered source (job_dropout, "
        "job_hazard, churn, availability_trace, or a plugin's; docs/extending.md).",
    )

    @field_validator("daily_window")
    @classmethod
    def _hours(cls, window: tuple[float, float] | None) -> tuple[float, float] | None:
        return None if window is None else check_hours(window, "daily_window")


def _strategy(raw: Any, _handler: Any) -> StrategyConfig:
    """The `strategy` section, validated by the settings class its `name` (default ppafl) selects."""
    if isinstance(raw, StrategyConfig):
        return raw
    if not isinstance(raw, dict):
        raise ValueError(  # noqa: TRY004  (pydantic reports a ValueError as a validation error)
            f"must be a mapping with a strategy name (known: {', '.join(STRATEGIES.names())})"
        )
    settings = validate_plugin_section(STRATEGIES, raw.get("name", "ppafl"), raw)
    assert isinstance(settings, StrategyConfig)
    return settings


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
    scheme: str = Field(
        "bfv",
        description="bfv = BFV lattice encryption (RLWE, 128-bit, TenSEAL); she = the paper's SHE, whose key "
        "the server can recover from what it holds (docs/threat-model.md); or a plugin's. Omitted: the scheme of "
        "`params`, else bfv.",
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
        + "; ".join(f"{name}: {' then '.join(s.defaults)}" for name, s in PRIVACY_SCHEMES.items())
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
        named = isinstance(params, str) and next((n for n, s in PRIVACY_SCHEMES.items() if params in s.param_sets), None)
        return {**data, "scheme": named or "bfv"}

    @model_validator(mode="after")
    def _params_of_the_scheme(self) -> EncryptionConfig:
        if self.scheme not in PRIVACY_SCHEMES:
            raise ValueError(PRIVACY_SCHEMES.unknown(self.scheme))
        known = PRIVACY_SCHEMES.get(self.scheme).param_sets
        if self.params is not None and self.params not in known:
            owner = next((n for n, s in PRIVACY_SCHEMES.items() if self.params in s.param_sets), None)
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


def _round_based(config: type[StrategyConfig], name: str) -> bool:
    """Whether the strategy registered as `name` works in rounds (its default settings tell)."""
    try:
        return config(name=name).build().round_based
    except (ValueError, TypeError):
        return False


def _check_model_takes(model: str, dataset: str, info: DatasetInfo) -> None:
    """ValueError unless the model takes the data set's samples and classes, naming what fits instead."""
    plugin = MODELS.get(model)
    shape = plugin.input_shape
    if shape is not None and tuple(shape) != info.sample_shape:
        sets = [n for n, d in DATASETS.items() if isinstance(d.info, DatasetInfo) and d.info.sample_shape == tuple(shape)]
        fits = [m for m, p in MODELS.items() if p.input_shape is None or tuple(p.input_shape) == info.sample_shape]
        raise ValueError(
            f"training.model {model!r} takes {' or '.join(sets) or str(tuple(shape)) + '-shaped'} inputs, not "
            f"{dataset!r} (samples of shape {info.sample_shape}): use training.model {' or '.join(fits)}, or another "
            "data.dataset"
        )
    if plugin.num_classes is not None and plugin.num_classes < info.num_classes:
        raise ValueError(f"training.model {model!r} tells {plugin.num_classes} classes apart but {dataset!r} has "
                         f"{info.num_classes}; use a model for {info.num_classes} classes (e.g. mlp)")


class Scenario(_Section):
    """A complete, validated simulation scenario."""

    name: str = Field("scenario", min_length=1, max_length=200, description="Name used in outputs.")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Seed of every random stream in the run (32 bits).")
    time_only: bool = Field(False, description="Skip gradient work: study timing and energy of large fleets.")
    data: DataConfig = DataConfig()
    training: TrainingConfig = TrainingConfig()
    fleet: FleetConfig = FleetConfig()
    failures: FailuresConfig = FailuresConfig()
    strategy: Annotated[SerializeAsAny[StrategyConfig], WrapValidator(_strategy)] = Field(
        default_factory=PPAFLConfig, description="The aggregation strategy and its settings, chosen by `name`."
    )
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
        info = self.data.info()
        _check_model_takes(self.training.model, self.data.dataset, info)
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
            n, samples, dataset = self.fleet.num_devices, info.train_samples, self.data.dataset
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
        if self.injected_delay.model != "independent" and not self.strategy.build().round_based:
            rounds = [n for n, cfg in STRATEGIES.items() if _round_based(cfg, n)]
            raise ValueError(
                f"injected_delay.model {self.injected_delay.model} draws delays per round, and {self.strategy.name} "
                f"has no rounds; use injected_delay.model: independent, or a round-based strategy ({', '.join(rounds)})"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        """The scenario as plain data (JSON/YAML safe)."""
        return self.model_dump(mode="json")
