"""Federated learning core: data sets, partitions, models, local training."""

from fl.data import DATASET_NAMES, DataError, Dataset, load_dataset
from fl.models import MODEL_NAMES, build_model, flops_per_sample, num_parameters
from fl.params import get_flat, set_flat
from fl.partition import PARTITION_SCHEMES, partition
from fl.training import LocalResult, TrainConfig, evaluate, local_update

__all__ = [
    "DATASET_NAMES",
    "MODEL_NAMES",
    "PARTITION_SCHEMES",
    "DataError",
    "Dataset",
    "LocalResult",
    "TrainConfig",
    "build_model",
    "evaluate",
    "flops_per_sample",
    "get_flat",
    "load_dataset",
    "local_update",
    "num_parameters",
    "partition",
    "set_flat",
]
