"""What a plugin of each kind is: the component (or a factory), its settings class, and what the scenario
checks need to know of it before anything is built.

Torch-heavy components are named as `"module:attribute"` strings, imported on first use,
so that reading and checking a scenario never loads torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

__all__ = ["DatasetInfo", "DatasetPlugin", "FailurePlugin", "ModelPlugin", "resolve"]


def resolve(ref: Any) -> Any:
    """`ref` itself, or the object a `"module:attribute"` string names (imported now)."""
    if not isinstance(ref, str):
        return ref
    module, _, attribute = ref.partition(":")
    return getattr(importlib.import_module(module), attribute)


@dataclass(frozen=True)
class ModelPlugin:
    """A model: `factory(**options)` returns a fresh `torch.nn.Module` (its own initialisation).

    `input_shape` / `num_classes`: the sample shape and the classes it is built for; None
    means any, and the data set's are then passed to the factory as `input_shape=` and
    `num_classes=` keyword arguments. `config` validates `training.model_options` (None:
    the model takes none). Its training cost per sample is measured from the built model.
    """

    factory: Callable[..., Any] | str
    input_shape: tuple[int, ...] | None = None
    num_classes: int | None = None
    config: type[BaseModel] | None = None
    description: str = ""


@dataclass(frozen=True)
class DatasetInfo:
    """What the checks need of a data set before loading it: sample shape, classes, sizes [samples]."""

    sample_shape: tuple[int, ...]
    num_classes: int
    train_samples: int
    test_samples: int


@dataclass(frozen=True)
class DatasetPlugin:
    """A data set: `loader(root=..., download=..., **options)` returns an `fl.data.Dataset` (train and test tensors).

    `info` is its `DatasetInfo`, or a function of the validated options (and root) that
    reads it cheaply (e.g. from a file's header). `config` validates `data.options` (None:
    it takes none); its fields listed in the class variable `path_fields` are file paths,
    resolved from the scenario file's folder like `data.root`.
    """

    loader: Callable[..., Any] | str
    info: DatasetInfo | Callable[..., DatasetInfo] | str
    config: type[BaseModel] | None = None
    description: str = ""

    def describe(self, options: Mapping[str, Any], root: str | None) -> DatasetInfo:
        """This data set's info for the given options and root."""
        info = resolve(self.info)
        return info if isinstance(info, DatasetInfo) else info(root=root, **options)


@dataclass(frozen=True)
class FailurePlugin:
    """A source of interruptions (`devices.InterruptionSource`) attached to every device.

    `factory(config, device, stream)` returns the device's source (or None: this device
    has none); `stream` is the device's own `devices.CounterStream` for this source, so
    what it draws never depends on other devices or sources. `config` validates the
    entry of `failures.sources` that names it.
    """

    factory: Callable[..., Any] | str
    config: type[BaseModel]
    description: str = ""
