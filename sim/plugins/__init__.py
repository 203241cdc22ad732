"""Plugins: a researcher's own strategy, model, data set, device or link class, failure source and
privacy scheme, without a fork.

Each kind has one registry (`STRATEGIES`, `MODELS`, `DATASETS`, `DEVICE_CLASSES`,
`LINK_CLASSES`, `FAILURES`, `PRIVACY_SCHEMES`); the built-in components register the same
way as a user's (`sim.plugins.builtin`). A scenario names a component by its registered
name and never imports code itself. A user's plugin is a Python file or module whose
top-level `register_*` calls add its components; it is loaded by `--plugin FILE_OR_MODULE`
on the command line, `plugins=[...]` in the Python API (`load_plugins`), or an installed
package's entry point in the group `ppafl.plugins`. Worker processes (sweeps, the process
and Ray executors) get the loaded plugins' sources and load them before anything else
(`activate`), so plugins work wherever a run goes. See docs/extending.md.
"""

from sim.plugins import builtin as _builtin  # the built-ins register through sim.plugins.registries
from sim.plugins.kinds import DatasetInfo, DatasetPlugin, FailurePlugin, ModelPlugin, resolve
from sim.plugins.loading import PluginSource, activate, load_plugins, loaded_plugins
from sim.plugins.registries import (
    DATASETS,
    DEVICE_CLASSES,
    FAILURES,
    LINK_CLASSES,
    MODELS,
    PRIVACY_SCHEMES,
    STRATEGIES,
    register_dataset,
    register_device_class,
    register_failure_source,
    register_link_class,
    register_model,
    register_privacy_scheme,
    register_strategy,
)
from sim.plugins.registry import ENTRY_POINT_GROUP, PluginError, Registry

del _builtin
__all__ = [
    "DATASETS",
    "DEVICE_CLASSES",
    "ENTRY_POINT_GROUP",
    "FAILURES",
    "LINK_CLASSES",
    "MODELS",
    "PRIVACY_SCHEMES",
    "STRATEGIES",
    "DatasetInfo",
    "DatasetPlugin",
    "FailurePlugin",
    "ModelPlugin",
    "PluginError",
    "PluginSource",
    "Registry",
    "activate",
    "load_plugins",
    "loaded_plugins",
    "register_dataset",
    "register_device_class",
    "register_failure_source",
    "register_link_class",
    "register_model",
    "register_privacy_scheme",
    "register_strategy",
    "resolve",
]
