"""Scenario files: YAML validated into a typed, immutable `Scenario`.

Every field has a default, unknown keys are rejected (typo safety), and every error
names the file, the field path, the bad value and what is allowed. Command-line
overrides (`--set key.path=value`) are applied to the raw mapping and validated the
same way as the file.
"""

from __future__ import annotations

import reprlib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from devices import DEVICE_CLASSES, LINK_CLASSES, DeviceProfile, resolve_profile

__all__ = [
    "Scenario",
    "ScenarioError",
    "apply_overrides",
    "load_scenario",
    "parse_override",
    "read_scenario",
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


class StrategyConfig(_Section):
    name: Literal["ppafl", "fedavg", "fedasync", "fedbuff"] = Field("ppafl", description="Aggregation strategy.")
    client_fraction: float = Field(
        0.1, gt=0, le=1, description="C: share of devices invited per round (concurrency for async strategies)."
    )
    round_deadline_s: float = Field(120.0, gt=0, description="Round deadline in s (fedavg, ppafl).")
    delay_threshold: int = Field(6, ge=0, description="ppafl: updates staler than this many rounds get weight 0.")
    alpha: float = Field(0.6, gt=0, le=1, description="fedasync: mixing rate alpha.")
    staleness_fn: Literal["constant", "polynomial", "hinge"] = Field(
        "polynomial", description="fedasync: staleness function s(t - tau)."
    )
    staleness_a: float = Field(0.5, ge=0, description="fedasync: exponent (polynomial) or slope (hinge) a.")
    staleness_b: int = Field(4, ge=0, description="fedasync: hinge knee b (rounds).")
    buffer_size: int = Field(5, ge=1, description="fedbuff: aggregate every K arrivals.")
    server_lr: float = Field(1.0, gt=0, description="fedbuff: server learning rate eta_g.")
    weight_by_samples: bool = Field(True, description="Weight clients by their sample counts (fedavg, ppafl, fedbuff).")


class InjectedDelayConfig(_Section):
    fraction: float = Field(
        0.0, ge=0, le=1, description="The paper's setting: share of jobs whose update is held back 1..max_rounds versions."
    )
    max_rounds: int = Field(8, ge=1, description="Largest injected delay, in global versions.")


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
    strategy: StrategyConfig = StrategyConfig()
    injected_delay: InjectedDelayConfig = InjectedDelayConfig()
    encryption: EncryptionConfig = EncryptionConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    stop: StopConfig = StopConfig()

    def to_dict(self) -> dict[str, Any]:
        """The scenario as plain data (JSON/YAML safe)."""
        return self.model_dump(mode="json")


_SHORT = reprlib.Repr()  # bad values are shown short: a huge input must not make a huge message
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxstring, _SHORT.maxother = 2, 4, 4, 60, 60


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid scenario ({err.error_count()} problem(s)):"]
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"  - {path}: unknown key (check its spelling; see README 'Scenario fields')")
            continue
        msg = e["msg"].removeprefix("Value error, ")
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
    raw = apply_overrides(read_scenario(path), overrides or [])
    return scenario_from_dict(raw, source=str(path))
