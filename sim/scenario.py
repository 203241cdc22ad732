"""Scenario files: YAML validated into a typed, immutable `Scenario`.

Every field has a default, unknown keys are rejected (typo safety), and every error
names the file, the field path, the bad value and what is allowed. Command-line
overrides (`--set key.path=value`) are applied to the raw mapping and validated the
same way as the file.
"""

from __future__ import annotations

import json
import reprlib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from devices import DEVICE_CLASSES, LINK_CLASSES, DeviceProfile, resolve_profile
from fl.strategies import AgentSource, LateWeight, StalenessClock

__all__ = [
    "Scenario",
    "ScenarioError",
    "apply_overrides",
    "load_scenario",
    "parse_override",
    "scenario_from_dict",
]


class ScenarioError(ValueError):
    """A scenario file or override is invalid; the message says where and how to fix it."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Section):
    dataset: Literal["mnist5k", "mnist", "cifar10"] = Field(
        "mnist5k", description="Data set: mnist5k (embedded, offline), mnist or cifar10 (need `root`)."
    )
    root: str | None = Field(None, description="Data root in torchvision's layout (mnist, cifar10).")
    download: bool = Field(False, description="Download the data set into `root` if it is missing.")
    partition: Literal["iid", "shards", "dirichlet"] = Field(
        "iid", description="How training samples are split over devices (shards = the paper's non-IID)."
    )
    alpha: float = Field(0.5, gt=0, description="Dirichlet concentration (partition: dirichlet).")
    max_test_samples: int | None = Field(
        None, gt=0, description="Evaluate on the first N test samples only (faster); null = all."
    )


class TrainingConfig(_Section):
    model: Literal["mnist_2nn", "mnist_cnn", "cifar_cnn", "cifar_cnn3"] = Field(
        "mnist_2nn", description="Model architecture (the paper's names)."
    )
    epochs: int = Field(1, ge=1, le=1000, description="Local epochs E per update.")
    batch_size: int = Field(10, ge=1, description="Local mini-batch size B.")
    lr: float = Field(0.01, gt=0, le=10, description="Local SGD learning rate.")
    prox_mu: float = Field(0.0, ge=0, description="FedProx proximal term mu (0 = plain SGD).")


class FleetGroup(_Section):
    device: str = Field("rpi4", description="Device class: " + ", ".join(sorted(DEVICE_CLASSES)) + ".")
    link: str = Field("wifi", description="Link class: " + ", ".join(sorted(LINK_CLASSES)) + ".")
    share: float = Field(1.0, gt=0, le=1, description="Fraction of the fleet in this group.")
    compute: dict[str, Any] = Field(default_factory=dict, description="Overrides of the device's compute numbers.")
    battery: dict[str, Any] = Field(default_factory=dict, description="Overrides of the device's battery numbers.")
    link_overrides: dict[str, Any] = Field(default_factory=dict, description="Overrides of the link's numbers.")

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
        (FleetGroup(),), min_length=1, description="Device/link mix; shares must sum to 1."
    )

    @model_validator(mode="after")
    def _shares_sum_to_one(self) -> FleetConfig:
        total = sum(g.share for g in self.groups)
        if abs(total - 1.0) > 1e-6:
            shares = ", ".join(f"{g.device}/{g.link}={g.share}" for g in self.groups)
            raise ValueError(f"group shares must sum to 1, got {total:g} ({shares}); rescale them")
        return self


class FailuresConfig(_Section):
    dropout_rate: float = Field(0.0, ge=0, le=1, description="Probability a device leaves for good during the run.")
    dropout_window_s: float | None = Field(
        None, gt=0, description="Leaving times are uniform in [0, window) s; null = stop.max_time_s."
    )
    unavailability: float = Field(0.0, ge=0, lt=1, description="Probability a device declines an invitation.")
    daily_window: tuple[float, float] | None = Field(
        None, description="[start_hour, end_hour) of the day when devices are willing to work; null = always."
    )


class _StrategyBase(_Section):
    """Settings every strategy has."""

    client_fraction: float = Field(
        0.1, gt=0, le=1, description="C: share of devices invited per round (concurrency for async strategies)."
    )
    round_deadline_s: float = Field(
        120.0, gt=0, le=1e9, allow_inf_nan=False,
        description="Round deadline [s] (round-based strategies); async ones retry empty slots after min(this, 30 s).",
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
    staleness_b: int = Field(4, ge=0, le=10**6, description="Hinge knee b [versions].")


class FedBuffConfig(_StrategyBase):
    name: Literal["fedbuff"] = Field("fedbuff", description="Aggregation strategy.")
    buffer_size: int = Field(5, ge=1, le=10**6, description="Aggregate every K arrivals.")
    server_lr: float = Field(1.0, gt=0, le=100, allow_inf_nan=False, description="Server learning rate eta_g.")
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
        0.0, ge=0, le=1,
        description="The paper's setting: share of jobs (independent) or of a round's slots (batch, topup) whose "
        "update is held back.",
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
    mode: Literal["off", "modeled", "real"] = Field(
        "modeled", description="off = plaintext; real = SHE ciphertexts; modeled = same integers, no crypto."
    )

    @field_validator("mode", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        return "off" if value is False else value  # YAML 1.1 reads a bare `off` as false
    params: Literal["paper", "high_throughput"] = Field(
        "high_throughput", description="SHE parameter set (paper = k0 2048, k2 160; high_throughput enlarges L)."
    )
    scale_bits: int = Field(16, ge=4, le=40, description="Fixed-point scale 2^scale_bits.")
    value_bound: float = Field(8.0, gt=0, description="Largest |parameter| an update may hold.")
    weight_bits: int = Field(8, ge=1, le=24, description="Integer aggregation weights lie in [1, 2^weight_bits).")


class EvaluationConfig(_Section):
    interval_s: float | None = Field(
        60.0, gt=0, description="Evaluate the global model every this many simulated s; null = off."
    )
    every_versions: int | None = Field(None, ge=1, description="Also evaluate every N global versions; null = off.")
    target_accuracy: float = Field(
        0.9, gt=0, le=1, description="Accuracy whose first-reached time is reported (does not stop the run)."
    )


class StopConfig(_Section):
    max_time_s: float = Field(3600.0, gt=0, description="Simulated time limit in s.")
    max_versions: int | None = Field(None, ge=1, description="Stop after this many global versions.")
    target_accuracy: float | None = Field(None, gt=0, le=1, description="Stop once test accuracy reaches this.")


class Scenario(_Section):
    """A complete, validated simulation scenario."""

    name: str = Field("scenario", description="Name used in outputs.")
    seed: int = Field(0, ge=0, description="Seed of every random stream in the run.")
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


def _strategy_owners() -> dict[str, list[str]]:
    """Each strategy-specific field and the strategies it belongs to ('the presets' for the presets)."""
    owners: dict[str, list[str]] = {}
    for tag, cls in STRATEGY_CONFIGS.items():
        for field in set(cls.model_fields) - set(_StrategyBase.model_fields) - {"name"}:
            owners.setdefault(field, []).append("the presets" if tag == "preset" else tag)
    return owners


def _strategy_problem(e: Any, loc: tuple[Any, ...]) -> str | None:
    """A clearer message for the errors of the `strategy` union (unknown name, another strategy's field)."""
    if e["type"] in ("union_tag_invalid", "union_tag_not_found"):
        names = [repr(t) for t in STRATEGY_CONFIGS if t != "preset"]
        known = f"known: {', '.join(names)}; presets: {', '.join(map(repr, PRESETS))}"
        if not isinstance(e["input"], dict):
            return f"strategy = {_SHORT.repr(e['input'])}: must be a mapping with a strategy name ({known})"
        return f"strategy.name = {_SHORT.repr(e['input'].get('name'))}: not a strategy ({known})"
    if e["type"] != "extra_forbidden" or len(loc) < 3:
        return None
    field = str(loc[-1])
    owners = [o for o in _strategy_owners().get(field, []) if o != loc[1]]
    if not owners:
        return None
    names = [o for o in owners if o != "the presets"]
    where = f" (strategy.name: {' or '.join(names)})" if names else ""
    which = "a preset" if loc[1] == "preset" else loc[1]
    return f"strategy.{field}: not a setting of {which}; it belongs to {', '.join(owners)}{where}"


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid scenario ({err.error_count()} problem(s)):"]
    for e in err.errors():
        loc = tuple(e["loc"])
        if len(loc) > 1 and loc[0] == "strategy" and loc[1] in STRATEGY_CONFIGS:
            special = _strategy_problem(e, loc)
            if special is not None:
                lines.append(f"  - {special}")
                continue
            loc = (loc[0], *loc[2:])  # drop the union's tag from the path
        elif loc == ("strategy",) and e["type"].startswith("union_tag"):
            lines.append(f"  - {_strategy_problem(e, loc)}")
            continue
        path = ".".join(str(p) for p in loc)
        msg = e["msg"].removeprefix("Value error, ")
        if not path:
            lines.append(f"  - {msg}")
            continue
        if e["type"] == "extra_forbidden":
            lines.append(f"  - {path}: unknown key (check its spelling; see README 'Scenario fields')")
            continue
        lines.append(f"  - {path} = {_SHORT.repr(e.get('input'))}: {msg}")
    return "\n".join(lines)


def scenario_from_dict(raw: Any, source: str = "<scenario>") -> Scenario:
    """Validate a raw mapping into a Scenario, or raise ScenarioError naming each problem."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ScenarioError(f"{source}: a scenario must be a mapping of sections, got {type(raw).__name__}")
    try:
        return Scenario.model_validate(raw)
    except ValidationError as err:
        raise ScenarioError(_format_errors(err, source)) from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split `key.path=value` into the path and a YAML-parsed value."""
    key, sep, value = text.partition("=")
    path = [p for p in key.strip().split(".")]
    if not sep or not key.strip() or any(not p for p in path):
        raise ScenarioError(f"--set {text!r}: expected KEY.PATH=VALUE, e.g. failures.dropout_rate=0.2")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as exc:
        raise ScenarioError(f"--set {text!r}: the value is not valid YAML ({exc})") from None
    return path, parsed


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of `raw` with each `key.path=value` override applied."""
    out = yaml.safe_load(yaml.safe_dump(raw)) or {}
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for i, part in enumerate(path[:-1]):
            child = node.get(part) if isinstance(node, dict) else None
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                where = ".".join(path[: i + 1])
                raise ScenarioError(f"--set {text!r}: {where} is a value, not a section")
            node = child
        node[path[-1]] = value
    return out


def read_scenario_file(path: str | Path) -> dict[str, Any]:
    """Read a scenario YAML file into a raw mapping, with clear errors for missing or broken files."""
    p = Path(path)
    if not p.is_file():
        raise ScenarioError(f"{p}: scenario file not found (see scenarios/ for examples)")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{p}: not valid YAML: {exc}") from None
    except UnicodeDecodeError:
        raise ScenarioError(f"{p}: not a UTF-8 text file") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ScenarioError(f"{p}: a scenario must be a mapping of sections, got {type(raw).__name__}")
    return raw


def _resolve_paths(raw: dict[str, Any], base: Path) -> dict[str, Any]:
    """Make the file paths a scenario names (data root, traces) relative to its own folder."""

    def fix(node: Any, key: str) -> None:
        if isinstance(node, dict) and isinstance(node.get(key), str) and not Path(node[key]).expanduser().is_absolute():
            node[key] = str((base / Path(node[key]).expanduser()).resolve())

    fix(raw.get("data"), "root")
    groups = (raw.get("fleet") or {}).get("groups") if isinstance(raw.get("fleet"), dict) else None
    for g in groups if isinstance(groups, list) else []:
        if isinstance(g, dict):
            fix(g.get("link_overrides"), "bandwidth_trace")
            battery = g.get("battery")
            fix(battery.get("recharge") if isinstance(battery, dict) else None, "trace_path")
    return raw


def load_scenario(path: str | Path, overrides: list[str] | None = None) -> Scenario:
    """Load, override and validate a scenario file.

    Relative paths inside the file (data.root, trace files) are taken relative to the
    file's folder; relative paths given with `--set` are taken relative to the working
    directory.
    """
    raw = _resolve_paths(read_scenario_file(path), Path(path).parent)
    raw = apply_overrides(raw, overrides or [])
    return scenario_from_dict(raw, source=str(path))
