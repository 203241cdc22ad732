"""The registries, one per kind of plugin, and the functions that register a component of each kind."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from devices.profiles import DEVICE_CLASSES as _DEVICE_TABLE
from devices.profiles import LINK_CLASSES as _LINK_TABLE
from devices.profiles import add_device_class, add_link_class, remove_device_class, remove_link_class
from fl.strategies.base import StrategyConfig
from sim.plugins.kinds import DatasetPlugin, FailurePlugin, ModelPlugin
from sim.plugins.registry import PluginError, Registry

__all__ = [
    "DATASETS", "DEVICE_CLASSES", "FAILURES", "LINK_CLASSES", "MODELS", "PRIVACY_SCHEMES", "STRATEGIES",
    "register_dataset", "register_device_class", "register_failure_source", "register_link_class", "register_model",
    "register_privacy_scheme", "register_strategy",
]

STRATEGIES: Registry[type[StrategyConfig]] = Registry("strategy", "strategy.name")
MODELS: Registry[ModelPlugin] = Registry("model", "training.model")
DATASETS: Registry[DatasetPlugin] = Registry("dataset", "data.dataset")
DEVICE_CLASSES: Registry[Any] = Registry("device class", "fleet.groups[].device", _DEVICE_TABLE, add_device_class,
                                         remove_device_class)
LINK_CLASSES: Registry[Any] = Registry("link class", "fleet.groups[].link", _LINK_TABLE, add_link_class,
                                       remove_link_class)
FAILURES: Registry[FailurePlugin] = Registry("failure source", "failures.sources[].name")
PRIVACY_SCHEMES: Registry[Any] = Registry("privacy scheme", "encryption.scheme")


def _literal_names(config: type[BaseModel]) -> list[str]:
    """The names a settings class answers to: the values of its `name` field's Literal."""
    from typing import get_args

    field = config.model_fields.get("name")
    names = [n for n in get_args(field.annotation) if isinstance(n, str)] if field is not None else []
    if not names:
        raise PluginError(
            f"{config.__name__} has no `name: Literal['...']` field: a strategy's settings class names the strategy "
            "(e.g. name: Literal['mystrategy'] = 'mystrategy')"
        )
    return names


def register_strategy(config: type[StrategyConfig]) -> type[StrategyConfig]:
    """Register a strategy by its settings class (a `fl.strategies.StrategyConfig` subclass with
    `name: Literal[...]` and a `build()` that returns the `fl.strategies.Strategy`). Usable as a decorator."""
    if not (isinstance(config, type) and issubclass(config, StrategyConfig)):
        raise PluginError(f"register_strategy takes a StrategyConfig subclass, got {config!r}")
    for name in _literal_names(config):
        STRATEGIES.register(name, config)
    return config


def register_model(name: str, plugin: ModelPlugin | Any, **details: Any) -> ModelPlugin:
    """Register a model: a `ModelPlugin`, or a factory returning a `torch.nn.Module` with the
    `ModelPlugin` fields as keywords (input_shape=, num_classes=, config=, description=)."""
    entry = plugin if isinstance(plugin, ModelPlugin) else ModelPlugin(factory=plugin, **details)
    return MODELS.register(name, entry)


def register_dataset(name: str, plugin: DatasetPlugin | Any, **details: Any) -> DatasetPlugin:
    """Register a data set: a `DatasetPlugin`, or a loader with the `DatasetPlugin` fields as keywords
    (info= a `DatasetInfo` or a function of the options, config=, description=)."""
    entry = plugin if isinstance(plugin, DatasetPlugin) else DatasetPlugin(loader=plugin, **details)
    return DATASETS.register(name, entry)


def register_device_class(name: str, compute: dict[str, Any], battery: dict[str, Any] | None = None,
                          sessions: tuple[float, float] | None = None) -> None:
    """Register a device class: its compute and battery numbers (the fields of `devices.ComputeSpec` and
    `devices.BatterySpec`) and its mean (online, offline) session lengths under churn [s]."""
    DEVICE_CLASSES.register(name, {"compute": dict(compute), "battery": dict(battery or {}),
                                   **({"sessions": tuple(float(s) for s in sessions)} if sessions is not None else {})})


def register_link_class(name: str, link: dict[str, Any]) -> None:
    """Register a link class: its numbers (the fields of `devices.LinkSpec`)."""
    LINK_CLASSES.register(name, dict(link))


def register_failure_source(name: str, plugin: FailurePlugin | Any, **details: Any) -> FailurePlugin:
    """Register a failure source: a `FailurePlugin`, or a factory `(config, device, stream) -> source` with
    config= its settings class (and description=)."""
    entry = plugin if isinstance(plugin, FailurePlugin) else FailurePlugin(factory=plugin, **details)
    return FAILURES.register(name, entry)


def register_privacy_scheme(scheme: Any) -> Any:
    """Register a privacy (encryption) scheme: an `fl.secure.Scheme` (its parameter sets, encoder, costs)."""
    return PRIVACY_SCHEMES.register(scheme.name, scheme)
