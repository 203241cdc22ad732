"""Federated learning core: data sets, partitions, models, local training.

Names are imported on first use, so that importing a light module of the package (e.g.
`fl.errors`) does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "DATASET_NAMES": "fl.data",
    "DataError": "fl.errors",
    "Dataset": "fl.data",
    "load_dataset": "fl.data",
    "MODEL_NAMES": "fl.models",
    "build_model": "fl.models",
    "flops_per_sample": "fl.models",
    "num_parameters": "fl.models",
    "get_flat": "fl.params",
    "set_flat": "fl.params",
    "PARTITION_SCHEMES": "fl.partition",
    "partition": "fl.partition",
    "LocalResult": "fl.training",
    "TrainConfig": "fl.training",
    "evaluate": "fl.training",
    "local_update": "fl.training",
}
__all__ = [*_HOMES]  # noqa: PLE0604  (the lazy table names every export)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'fl' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value  # looked up once
    return value
