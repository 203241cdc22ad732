"""The paper's models by name, with deterministic initialisation and a FLOP count.

``mnist_2nn``  MLP 784-200-200-10 with ReLU (199,210 parameters).
``mnist_cnn``  conv 5x5x32 (same padding) + 2x2 max pool, conv 5x5x64 + pool,
               fc 512, fc 10 (1,663,370 parameters, as in McMahan et al.).
``cifar_cnn``  LeNet-style: conv 5x5x6 + pool, conv 5x5x16 + pool, fc 120,
               fc 84, fc 10 (62,006 parameters).
``cifar_cnn3`` conv 3x3x32, 3x3x64, 3x3x128 (same padding), each + 2x2 max
               pool, fc 1028, dropout 0.3, fc 10 (2,209,910 parameters).

All take normalised ``float32`` images N x C x H x W and return logits. None
has buffers (no batch norm), so the parameters are the whole state.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["MODEL_NAMES", "build_model", "flops_per_sample", "num_parameters"]


def _mnist_2nn() -> nn.Module:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(28 * 28, 200),
        nn.ReLU(),
        nn.Linear(200, 200),
        nn.ReLU(),
        nn.Linear(200, 10),
    )


def _mnist_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 32, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 512),
        nn.ReLU(),
        nn.Linear(512, 10),
    )


def _cifar_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 6, kernel_size=5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, kernel_size=5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120),
        nn.ReLU(),
        nn.Linear(120, 84),
        nn.ReLU(),
        nn.Linear(84, 10),
    )


def _cifar_cnn3() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 32, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(64, 128, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(128 * 4 * 4, 1028),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Linear(1028, 10),
    )


_BUILDERS: dict[str, Callable[[], nn.Module]] = {
    "mnist_2nn": _mnist_2nn,
    "mnist_cnn": _mnist_cnn,
    "cifar_cnn": _cifar_cnn,
    "cifar_cnn3": _cifar_cnn3,
}

MODEL_NAMES: tuple[str, ...] = tuple(_BUILDERS)


def build_model(name: str, seed: int = 0) -> nn.Module:
    """Build model ``name`` with PyTorch's default init drawn from ``seed``.

    The global torch RNG is left untouched. Raises ``ValueError`` listing
    :data:`MODEL_NAMES` for an unknown name.
    """
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(MODEL_NAMES)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _BUILDERS[name]()


def num_parameters(model: nn.Module) -> int:
    """Number of scalar parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())


def flops_per_sample(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Forward-pass FLOPs for one sample of shape ``input_shape`` (C x H x W).

    Counts 2 FLOPs per multiply-add of every ``Conv2d`` and ``Linear`` layer,
    measured by running one zero sample through the model with hooks; biases,
    activations and pooling are not counted. A training step costs about 3x
    the forward pass (forward + backward for activations and weights).
    """
    total = 0

    def count(module: nn.Module, _inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Linear):
            total += 2 * module.in_features * module.out_features
        elif isinstance(module, nn.Conv2d):  # every output element needs (C_in / groups) * kh * kw MACs
            kh, kw = module.kernel_size
            total += 2 * output[0].numel() * (module.in_channels // module.groups) * kh * kw

    handles = [
        m.register_forward_hook(count)
        for m in model.modules()
        if isinstance(m, (nn.Linear, nn.Conv2d))
    ]
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):  # dropout draws
            model(torch.zeros(1, *input_shape))
    finally:
        for handle in handles:
            handle.remove()
    return total
