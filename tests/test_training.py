"""Tests for fl.training: local SGD (+FedProx), evaluation, determinism, and FedAvg end to end."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fl.data import Dataset, load_dataset
from fl.models import build_model
from fl.params import get_flat, set_flat
from fl.partition import partition
from fl.training import LocalResult, TrainConfig, evaluate, local_update


@pytest.fixture(scope="module")
def small(mnist5k: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    return mnist5k.x_train[:120], mnist5k.y_train[:120]


def _cifar_batch(n: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)


def _fedavg(ds: Dataset, rounds: int) -> float:
    """Plain FedAvg: 10 IID clients, mnist_2nn, E=1, B=10; returns test accuracy."""
    clients = [torch.from_numpy(p) for p in partition(ds.y_train.numpy(), 10, "iid", seed=0)]
    params = get_flat(build_model("mnist_2nn", seed=0))
    cfg = TrainConfig(epochs=1, batch_size=10, lr=0.05)
    for r in range(rounds):
        results = [
            local_update(
                "mnist_2nn", params, ds.x_train[idx], ds.y_train[idx], cfg, seed=100 * r + k
            )
            for k, idx in enumerate(clients)
        ]
        weights = np.array([res.num_samples for res in results], dtype=np.float64)
        stacked = np.stack([res.params for res in results]).astype(np.float64)
        params = (weights @ stacked / weights.sum()).astype(np.float32)
    accuracy, loss = evaluate("mnist_2nn", params, ds.x_test, ds.y_test)
    assert np.isfinite(loss)
    return accuracy


# --- TrainConfig -------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epochs": 0}, "epochs must be an integer >= 1, got 0"),
        ({"epochs": 1.5}, "epochs must be an integer >= 1, got 1.5"),
        ({"batch_size": True}, "batch_size must be an integer >= 1, got True"),
        ({"lr": 0.0}, "lr must be a finite number > 0, got 0.0"),
        ({"lr": float("nan")}, "lr must be a finite number > 0, got nan"),
        ({"prox_mu": -0.1}, "prox_mu must be a finite number >= 0, got -0.1"),
    ],
)
def test_train_config_rejects_bad_values(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)


def test_train_config_is_frozen() -> None:
    with pytest.raises(AttributeError):
        TrainConfig().lr = 1.0  # type: ignore[misc]


# --- local_update ------------------------------------------------------------


def test_local_update_trains_and_reports(small) -> None:
    x, y = small
    start = get_flat(build_model("mnist_2nn", seed=0))
    before, before_loss = evaluate("mnist_2nn", start, x, y)
    cfg = TrainConfig(epochs=3, batch_size=10, lr=0.05)
    res = local_update("mnist_2nn", start, x, y, cfg, seed=1)
    assert isinstance(res, LocalResult)
    assert res.num_samples == 120
    assert res.params.dtype == np.float32 and res.params.shape == start.shape
    after, loss = evaluate("mnist_2nn", res.params, x, y)
    assert after > before + 0.3
    assert 0 < res.train_loss < before_loss and loss < before_loss


def test_local_update_is_deterministic_and_history_free(small) -> None:
    x, y = small
    start = get_flat(build_model("mnist_2nn", seed=0))
    cfg = TrainConfig(epochs=2, batch_size=7, lr=0.05)  # uneven last batch
    first = local_update("mnist_2nn", start, x, y, cfg, seed=42)
    # unrelated work in between: other seeds, other data, evaluation, global RNG use
    local_update("mnist_2nn", first.params, x[:50], y[:50], cfg, seed=3)
    evaluate("mnist_2nn", first.params, x, y)
    torch.rand(10)
    again = local_update("mnist_2nn", start, x, y, cfg, seed=42)
    other = local_update("mnist_2nn", start, x, y, cfg, seed=43)
    assert np.array_equal(first.params, again.params)
    assert first.train_loss == again.train_loss
    assert not np.array_equal(first.params, other.params)


def test_dropout_is_seeded_and_global_rng_untouched() -> None:
    x, y = _cifar_batch()
    start = get_flat(build_model("cifar_cnn3", seed=0))
    cfg = TrainConfig(epochs=1, batch_size=24, lr=0.01)  # one full batch: only dropout varies
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    a = local_update("cifar_cnn3", start, x, y, cfg, seed=5)
    assert torch.equal(torch.rand(3), expected)
    b = local_update("cifar_cnn3", start, x, y, cfg, seed=5)
    c = local_update("cifar_cnn3", start, x, y, cfg, seed=6)
    assert np.array_equal(a.params, b.params)
    assert not np.array_equal(a.params, c.params)


def test_same_result_in_another_thread(small) -> None:
    x, y = small
    start = get_flat(build_model("mnist_2nn", seed=0))
    cfg = TrainConfig(epochs=1, batch_size=10, lr=0.05)
    here = local_update("mnist_2nn", start, x, y, cfg, seed=9)
    box: list[LocalResult] = []
    thread = threading.Thread(
        target=lambda: box.append(local_update("mnist_2nn", start, x, y, cfg, seed=9))
    )
    thread.start()
    thread.join()
    assert np.array_equal(here.params, box[0].params)


def test_fedprox_matches_hand_written_gradient_descent(small) -> None:
    x, y = small
    start = get_flat(build_model("mnist_2nn", seed=0))
    lr, mu, steps = 0.1, 2.0, 3
    # full batch, so every epoch is one step on the same (permuted) batch
    res = local_update("mnist_2nn", start, x, y, TrainConfig(steps, 120, lr, mu), seed=0)

    model = build_model("mnist_2nn")
    set_flat(model, start)
    anchor = [p.detach().clone() for p in model.parameters()]
    for _ in range(steps):
        prox = sum(((p - a) ** 2).sum() for p, a in zip(model.parameters(), anchor))
        loss = F.cross_entropy(model(x), y) + mu / 2 * prox
        grads = torch.autograd.grad(loss, list(model.parameters()))
        with torch.no_grad():
            for p, g in zip(model.parameters(), grads):
                p.sub_(lr * g)
    np.testing.assert_allclose(res.params, get_flat(model), rtol=0, atol=1e-5)


def test_fedprox_keeps_the_update_near_the_global_model(small) -> None:
    x, y = small
    start = get_flat(build_model("mnist_2nn", seed=0))
    drift = {}
    for mu in (0.0, 1.0):
        res = local_update("mnist_2nn", start, x, y, TrainConfig(3, 10, 0.05, mu), seed=1)
        drift[mu] = np.linalg.norm(res.params - start)
    assert drift[1.0] < 0.8 * drift[0.0]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"seed": -1}, r"seed must be an integer in \[0, 2\*\*63\), got -1"),
        ({"seed": 1.0}, "seed must be an integer"),
        ({"x": torch.zeros(120, 1, 28, 28, dtype=torch.float64)}, "x must be float32"),
        ({"y": torch.zeros(119, dtype=torch.int64)}, "non-zero number of samples, got 120 and 119"),
        ({"y": torch.zeros(120, dtype=torch.int32)}, "y must be a 1-D int64 label tensor"),
        ({"params": np.zeros(5, np.float32)}, "needs a 1-D vector of 199210 values"),
        ({"model": "lenet"}, "unknown model 'lenet'; known models"),
    ],
)
def test_local_update_rejects_bad_input(small, change: dict, message: str) -> None:
    x, y = small
    args = {
        "model": "mnist_2nn",
        "params": get_flat(build_model("mnist_2nn")),
        "x": x,
        "y": y,
        "seed": 0,
        **change,
    }
    with pytest.raises(ValueError, match=message):
        local_update(
            args["model"], args["params"], args["x"], args["y"], TrainConfig(), args["seed"]
        )


# --- evaluate ----------------------------------------------------------------


def test_evaluate_matches_direct_computation() -> None:
    params = get_flat(build_model("cifar_cnn", seed=3))
    x, y = _cifar_batch(50)
    accuracy, loss = evaluate("cifar_cnn", params, x, y, batch_size=16)  # uneven batches
    model = build_model("cifar_cnn", seed=3)
    with torch.no_grad():
        logits = model(x)
    assert accuracy == pytest.approx((logits.argmax(1) == y).double().mean().item())
    assert loss == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        evaluate("cifar_cnn", params, x, y, batch_size=0)


# --- FedAvg end to end ---------------------------------------------------------


def test_fedavg_on_mnist5k_exceeds_80_percent(mnist5k: Dataset) -> None:
    assert _fedavg(mnist5k, rounds=3) > 0.80


@pytest.mark.slow
@pytest.mark.full_mnist
def test_fedavg_on_full_mnist_exceeds_80_percent(shared_data_dir: Path) -> None:
    ds = load_dataset("mnist", root=shared_data_dir)
    assert _fedavg(ds, rounds=2) > 0.80
