"""The paper's models by name, any other model through a `ModelSpec`, with deterministic initialisation and
a FLOP count.

``mnist_2nn``  MLP 784-200-200-10 with ReLU (199,210 parameters).
``mnist_cnn``  conv 5x5x32 (same padding) + 2x2 max pool, conv 5x5x64 + pool,
               fc 512, fc 10 (1,663,370 parameters, as in McMahan et al.).
``cifar_cnn``  LeNet-style: conv 5x5x6 + pool, conv 5x5x16 + pool, fc 120,
               fc 84, fc 10 (62,006 parameters).
``mlp``        a multilayer perceptron for any sample shape and number of classes
               (flattened input, `hidden` ReLU layers): for data sets from files.
``cifar_cnn3`` conv 3x3x32, 3x3x64, 3x3x128 (same padding), each + 2x2 max
               pool, fc 1028, dropout 0.3, fc 10 (2,209,910 parameters).

All take normalised ``float32`` images N x C x H x W and return logits. None
has buffers (no batch norm), so the parameters are the whole state; a user's model
must be the same (parameters only: they are what the clients send).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = [
    "MODEL_NAMES", "ModelSpec", "build_model", "builtin_spec", "cifar_cnn", "cifar_cnn3", "flops_per_sample", "mlp", "mnist_2nn",
    "mnist_cnn", "num_parameters",
]


def mnist_2nn() -> nn.Module:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(28 * 28, 200),
        nn.ReLU(),
        nn.Linear(200, 200),
        nn.ReLU(),
        nn.Linear(200, 10),
    )


def mnist_cnn() -> nn.Module:
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


def cifar_cnn() -> nn.Module:
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


def cifar_cnn3() -> nn.Module:
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


def mlp(input_shape: tuple[int, ...], num_classes: int, hidden: tuple[int, ...] = (200, 200)) -> nn.Module:
    """An MLP from the flattened sample through `hidden` ReLU layers to `num_classes` logits."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = 1
    for d in input_shape:
        width *= int(d)
    for h in hidden:
        layers += [nn.Linear(width, int(h)), nn.ReLU()]
        width = int(h)
    layers.append(nn.Linear(width, int(num_classes)))
    return nn.Sequential(*layers)


_BUILDERS: dict[str, Callable[[], nn.Module]] = {
    "mnist_2nn": mnist_2nn,
    "mnist_cnn": mnist_cnn,
    "cifar_cnn": cifar_cnn,
    "cifar_cnn3": cifar_cnn3,
}

MODEL_NAMES: tuple[str, ...] = tuple(_BUILDERS)


@dataclass(frozen=True)
class ModelSpec:
    """How to build one model: `factory(**kwargs)` returns a fresh `nn.Module`; `name` names it in messages.

    Hashable (the kwargs are kept as sorted items), so trainers can keep one instance per spec.
    """

    name: str
    factory: Callable[..., nn.Module]
    kwargs: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(cls, name: str, factory: Callable[..., nn.Module], kwargs: Mapping[str, Any] | None = None) -> ModelSpec:
        """A spec whose keyword arguments are frozen (lists become tuples) so that it hashes."""
        return cls(name, factory, tuple(sorted((k, _frozen(v)) for k, v in (kwargs or {}).items())))

    @property
    def key(self) -> str:
        """A stable text naming this model and its options (the same in every process)."""
        return self.name if not self.kwargs else f"{self.name}{dict(self.kwargs)!r}"

    def build(self, seed: int = 0) -> nn.Module:
        """A fresh model with PyTorch's default init drawn from `seed` (the global torch RNG is left untouched)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = self.factory(**dict(self.kwargs))
        if not isinstance(model, nn.Module):
            raise TypeError(f"model {self.name!r}: its factory returned {type(model).__name__}, not a torch.nn.Module")
        if any(True for _ in model.buffers()):
            raise ValueError(f"model {self.name!r} has buffers (e.g. batch norm statistics), which clients would not "
                             "send; use layers without running state (e.g. GroupNorm or LayerNorm)")
        if num_parameters(model) == 0:
            raise ValueError(f"model {self.name!r} has no parameters to train")
        return model


def _frozen(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    return value


def builtin_spec(name: str) -> ModelSpec:
    """The spec of one of the paper's models (`MODEL_NAMES`); ValueError listing them for another name."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(MODEL_NAMES)}")
    return ModelSpec(name, _BUILDERS[name])


def build_model(model: str | ModelSpec, seed: int = 0) -> nn.Module:
    """Build `model` (one of the paper's models by name, or a `ModelSpec`) with PyTorch's default init drawn
    from `seed`. The global torch RNG is left untouched. ValueError listing :data:`MODEL_NAMES` for an unknown
    name.
    """
    return (builtin_spec(model) if isinstance(model, str) else model).build(seed)


def num_parameters(model: nn.Module) -> int:
    """Number of scalar parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())


def flops_per_sample(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Forward-pass FLOPs for one sample of shape ``input_shape`` (C x H x W, or any shape the model takes).

    Measured by running one zero sample through the model under torch's `FlopCounterMode`,
    which counts 2 FLOPs per multiply-add of every matrix product and convolution (any
    layer built on them: linear, conv, attention); biases, activations and pooling are not
    counted. A training step costs about 3x the forward pass (forward + backward).
    """
    with torch.no_grad(), torch.random.fork_rng(devices=[]), FlopCounterMode(display=False) as counter:  # dropout draws
        model(torch.zeros(1, *input_shape))
    return int(counter.get_total_flops())
