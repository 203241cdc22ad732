"""Tests for fl.models (architectures, init, FLOPs) and fl.params (flat vectors)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fl.models import MODEL_NAMES, build_model, flops_per_sample, num_parameters
from fl.params import get_flat, set_flat

INPUT_SHAPES = {
    "mnist_2nn": (1, 28, 28),
    "mnist_cnn": (1, 28, 28),
    "cifar_cnn": (3, 32, 32),
    "cifar_cnn3": (3, 32, 32),
}

# Hand counts: weights + biases per layer.
PARAMETERS = {
    "mnist_2nn": 784 * 200 + 200 + 200 * 200 + 200 + 200 * 10 + 10,  # 199,210
    "mnist_cnn": 25 * 32 + 32 + 25 * 32 * 64 + 64 + 3136 * 512 + 512 + 512 * 10 + 10,
    "cifar_cnn": 75 * 6 + 6 + 150 * 16 + 16 + 400 * 120 + 120 + 120 * 84 + 84 + 84 * 10 + 10,
    "cifar_cnn3": (
        27 * 32 + 32 + 288 * 64 + 64 + 576 * 128 + 128 + 2048 * 1028 + 1028 + 1028 * 10 + 10
    ),
}

# Hand counts: 2 * multiply-adds of each conv (output elements x kernel volume) and fc layer.
FLOPS = {
    "mnist_2nn": 2 * (784 * 200 + 200 * 200 + 200 * 10),
    "mnist_cnn": 2 * (28 * 28 * 32 * 25 + 14 * 14 * 64 * 32 * 25 + 3136 * 512 + 512 * 10),
    "cifar_cnn": 2 * (28 * 28 * 6 * 75 + 10 * 10 * 16 * 150 + 400 * 120 + 120 * 84 + 84 * 10),
    "cifar_cnn3": 2
    * (32 * 32 * 32 * 27 + 16 * 16 * 64 * 288 + 8 * 8 * 128 * 576 + 2048 * 1028 + 1028 * 10),
}


def test_model_names() -> None:
    assert MODEL_NAMES == ("mnist_2nn", "mnist_cnn", "cifar_cnn", "cifar_cnn3")


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_architecture_parameters_and_flops(name: str) -> None:
    model = build_model(name, seed=0)
    assert num_parameters(model) == PARAMETERS[name]
    assert flops_per_sample(model, INPUT_SHAPES[name]) == FLOPS[name]
    assert list(model.buffers()) == []
    logits = model(torch.zeros(3, *INPUT_SHAPES[name]))
    assert logits.shape == (3, 10)


def test_mnist_cnn_matches_the_paper_parameter_count() -> None:
    assert num_parameters(build_model("mnist_cnn")) == 1_663_370


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_init_is_deterministic_from_seed(name: str) -> None:
    a, b, c = (get_flat(build_model(name, seed=s)) for s in (1, 1, 2))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_build_and_flops_leave_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(4)
    torch.manual_seed(123)
    model = build_model("cifar_cnn3", seed=9)
    model.train()  # dropout active during the FLOP count
    flops_per_sample(model, (3, 32, 32))
    assert torch.equal(torch.rand(4), expected)


def test_flop_hooks_are_removed() -> None:
    model = build_model("mnist_2nn")
    flops_per_sample(model, (1, 28, 28))
    assert all(not m._forward_hooks for m in model.modules())


def test_unknown_model_lists_known_names() -> None:
    known = "mnist_2nn, mnist_cnn, cifar_cnn, cifar_cnn3"
    with pytest.raises(ValueError, match=f"unknown model 'resnet'; known models: {known}"):
        build_model("resnet")


def test_flat_round_trip() -> None:
    source, target = build_model("cifar_cnn", seed=1), build_model("cifar_cnn", seed=2)
    flat = get_flat(source)
    assert flat.dtype == np.float32 and flat.shape == (PARAMETERS["cifar_cnn"],)
    set_flat(target, flat)
    assert np.array_equal(get_flat(target), flat)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(source(x), target(x))


def test_get_flat_is_a_copy_and_set_flat_accepts_read_only_float64() -> None:
    model = build_model("mnist_2nn")
    flat = get_flat(model)
    flat[:] = 0
    assert np.abs(get_flat(model)).sum() > 0
    values = np.arange(flat.size, dtype=np.float64) * 1e-6
    values.setflags(write=False)
    set_flat(model, values)
    assert np.allclose(get_flat(model), values, atol=1e-7)
    assert model[1].weight[0, 3].item() == pytest.approx(3e-6)


def test_set_flat_rejects_wrong_size_and_dtype() -> None:
    model = build_model("mnist_2nn")
    with pytest.raises(ValueError, match=r"\(10,\), but Sequential needs a 1-D vector of 199210"):
        set_flat(model, np.zeros(10, np.float32))
    with pytest.raises(ValueError, match="must be floating point, got dtype int64"):
        set_flat(model, np.zeros(199210, np.int64))
