"""Data sets from common files, without code: a NumPy `.npz` of arrays, or a CSV of features with a label column.

Both become an `fl.data.Dataset`: features as `float32` (standardised per feature with
the training set's mean and standard deviation unless `standardise` is off), labels as
`int64` class indices 0..C-1 (C = the largest label + 1). A file without its own test
split is split with a seeded random permutation (`test_fraction`). Any client partition
(IID, shards, Dirichlet) then applies. `*_info` read what the scenario checks need (sample
shape, classes, sizes) without converting the data. Problems raise `DataError` naming the
file and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fl.errors import DataError

__all__ = ["MAX_FILE_BYTES", "FileInfo", "csv_info", "load_csv", "load_npz", "npz_info"]

MAX_FILE_BYTES = 2 * 2**30  # a data file larger than this is refused (2 GiB): convert it to a loader plugin


@dataclass(frozen=True)
class FileInfo:
    """What a data file holds: sample shape, classes, training and test samples."""

    sample_shape: tuple[int, ...]
    num_classes: int
    train_samples: int
    test_samples: int


def _checked(path: str | Path, kind: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"{p}: no such {kind} file" + (" (it is a folder)" if p.is_dir() else "")
                        + "; check data.options.path (relative paths start at the scenario file's folder)")
    size = p.stat().st_size
    if size > MAX_FILE_BYTES:
        raise DataError(f"{p}: {size / 2**30:.1f} GiB is more than a data file may hold ({MAX_FILE_BYTES // 2**30} "
                        "GiB); load it with a data-set plugin instead (docs/extending.md)")
    return p


def _labels(y: np.ndarray, where: str) -> np.ndarray:
    """Labels as int64 class indices; DataError unless they are whole numbers >= 0."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise DataError(f"{where}: labels must be one number per sample, got shape {y.shape}")
    if y.size == 0:
        raise DataError(f"{where}: no samples")
    if not np.issubdtype(y.dtype, np.number) or not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
        raise DataError(f"{where}: labels must be whole numbers 0..C-1 (class indices), got {y[:3].tolist()}...")
    if y.min() < 0:
        raise DataError(f"{where}: labels must be >= 0 (class indices 0..C-1), found {int(y.min())}")
    if y.max() >= 100_000:
        raise DataError(f"{where}: label {int(y.max())} would make {int(y.max()) + 1:,} classes; use class indices "
                        "0..C-1")
    return y.astype(np.int64)


def _split(n: int, test_fraction: float, seed: int, where: str) -> tuple[np.ndarray, np.ndarray]:
    n_test = round(n * test_fraction)
    if not 1 <= n_test < n:
        raise DataError(f"{where}: {n} samples with test_fraction {test_fraction:g} leave {n_test} for testing and "
                        f"{n - n_test} for training; both need at least one (change test_fraction)")
    order = np.random.default_rng(seed).permutation(n)
    return order[n_test:], order[:n_test]


def _dataset(name: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
             standardise: bool) -> Any:
    import torch

    from fl.data import Dataset

    xtr = np.asarray(x_train, dtype=np.float32)
    xte = np.asarray(x_test, dtype=np.float32)
    if not (np.all(np.isfinite(xtr)) and np.all(np.isfinite(xte))):
        raise DataError(f"{name}: features hold NaN or infinite values; clean the file first")
    if standardise:
        mean = xtr.mean(axis=0)
        std = xtr.std(axis=0)
        std[std == 0] = 1.0
        xtr, xte = (xtr - mean) / std, (xte - mean) / std
    classes = int(max(y_train.max(), y_test.max())) + 1
    return Dataset(name, torch.from_numpy(np.ascontiguousarray(xtr)), torch.from_numpy(y_train),
                   torch.from_numpy(np.ascontiguousarray(xte)), torch.from_numpy(y_test), classes,
                   tuple(int(d) for d in xtr.shape[1:]))


def _npz_arrays(path: str | Path, keys: list[str]) -> tuple[Path, dict[str, np.ndarray]]:
    p = _checked(path, ".npz")
    try:
        with np.load(p, allow_pickle=False) as npz:
            missing = [k for k in keys if k not in npz.files]
            if missing:
                raise DataError(f"{p}: no array named {', '.join(map(repr, missing))} (it holds {', '.join(npz.files)});"
                                " set data.options x_key / y_key to its names")
            return p, {k: npz[k] for k in keys}
    except DataError:
        raise
    except (OSError, ValueError) as exc:
        raise DataError(f"{p}: not a readable .npz file of arrays ({exc})") from None


def _npz_parts(path: str | Path, x_key: str, y_key: str, test_keys: tuple[str, str] | None) -> dict[str, np.ndarray]:
    keys = [x_key, y_key, *(test_keys or ())]
    p, arrays = _npz_arrays(path, keys)
    for xk, yk in [(x_key, y_key), *([test_keys] if test_keys else [])]:
        x, y = arrays[xk], arrays[yk]
        if x.ndim < 2 or len(x) != len(y):
            raise DataError(f"{p}: {xk} must hold one sample per label ({x.ndim}-d array of {len(x)} vs {len(y)} "
                            f"labels in {yk})")
    if test_keys and arrays[test_keys[0]].shape[1:] != arrays[x_key].shape[1:]:
        raise DataError(f"{p}: test samples have shape {arrays[test_keys[0]].shape[1:]}, training samples "
                        f"{arrays[x_key].shape[1:]}")
    return arrays


def npz_info(path: str | Path, x_key: str = "x", y_key: str = "y", x_test_key: str | None = None,
             y_test_key: str | None = None, test_fraction: float = 0.2, **_: Any) -> FileInfo:
    """The sample shape, classes and sizes of an .npz data set (see `load_npz` for the options)."""
    test_keys = (x_test_key, y_test_key) if x_test_key and y_test_key else None
    arrays = _npz_parts(path, x_key, y_key, test_keys)
    y = _labels(arrays[y_key], f"{path}: {y_key}")
    if test_keys:
        y_test = _labels(arrays[test_keys[1]], f"{path}: {test_keys[1]}")
        n_train, n_test, classes = len(y), len(y_test), int(max(y.max(), y_test.max())) + 1
    else:
        train, test = _split(len(y), test_fraction, 0, str(path))
        n_train, n_test, classes = len(train), len(test), int(y.max()) + 1
    return FileInfo(tuple(int(d) for d in arrays[x_key].shape[1:]), classes, n_train, n_test)


def load_npz(path: str | Path, x_key: str = "x", y_key: str = "y", x_test_key: str | None = None,
             y_test_key: str | None = None, test_fraction: float = 0.2, standardise: bool = True,
             split_seed: int = 0, **_: Any) -> Any:
    """An .npz file's arrays as a Dataset: samples `x_key` (N x ...), labels `y_key` (N); a test split from
    `x_test_key`/`y_test_key`, else `test_fraction` of the samples drawn with `split_seed`."""
    test_keys = (x_test_key, y_test_key) if x_test_key and y_test_key else None
    arrays = _npz_parts(path, x_key, y_key, test_keys)
    x, y = arrays[x_key], _labels(arrays[y_key], f"{path}: {y_key}")
    if test_keys:
        return _dataset(Path(path).stem, x, y, arrays[test_keys[0]], _labels(arrays[test_keys[1]], str(path)),
                        standardise)
    train, test = _split(len(y), test_fraction, split_seed, str(path))
    return _dataset(Path(path).stem, x[train], y[train], x[test], y[test], standardise)


def _csv_table(path: str | Path, label_column: str) -> tuple[np.ndarray, np.ndarray]:
    p = _checked(path, "CSV")
    try:
        table = pd.read_csv(p)
    except (ValueError, UnicodeDecodeError, OSError) as exc:
        raise DataError(f"{p}: not a readable CSV file ({exc})") from None
    if label_column not in table.columns:
        raise DataError(f"{p}: no column {label_column!r} (columns: {', '.join(map(str, table.columns[:10]))}"
                        f"{', ...' if len(table.columns) > 10 else ''}); set data.options.label_column")
    features = table.drop(columns=[label_column])
    text = [str(c) for c, kind in features.dtypes.items() if not pd.api.types.is_numeric_dtype(kind)]
    if text:
        raise DataError(f"{p}: feature column(s) {', '.join(text[:5])} are not numbers; encode them as numbers "
                        "or drop them")
    if features.shape[1] == 0:
        raise DataError(f"{p}: no feature columns beside {label_column!r}")
    return features.to_numpy(dtype=np.float64), _labels(table[label_column].to_numpy(), f"{p}: {label_column}")


def csv_info(path: str | Path, label_column: str = "label", test_fraction: float = 0.2, **_: Any) -> FileInfo:
    """The sample shape, classes and sizes of a CSV data set (see `load_csv`)."""
    x, y = _csv_table(path, label_column)
    train, test = _split(len(y), test_fraction, 0, str(path))
    return FileInfo((int(x.shape[1]),), int(y.max()) + 1, len(train), len(test))


def load_csv(path: str | Path, label_column: str = "label", test_fraction: float = 0.2, standardise: bool = True,
             split_seed: int = 0, **_: Any) -> Any:
    """A CSV file (a header row; numeric feature columns and a `label_column` of class indices) as a Dataset;
    `test_fraction` of the rows drawn with `split_seed` are the test set."""
    x, y = _csv_table(path, label_column)
    train, test = _split(len(y), test_fraction, split_seed, str(path))
    return _dataset(Path(path).stem, x[train], y[train], x[test], y[test], standardise)
