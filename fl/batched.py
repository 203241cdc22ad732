"""Many clients' local updates at once: `torch.func.vmap` over per-client parameters.

`batched_local_update` runs the same mini-batch SGD as `fl.training.local_update`
(same seeds, same batch order, same FedProx step) for K clients together: the K
models are stacked along a leading axis and one vmapped gradient call serves all of
them per step. The clients must hold the same number of samples (so their batch
schedules line up) and the model must have no dropout (vmap draws masks differently).

The results equal the one-client-at-a-time ones up to float rounding: batched
matrix products add the same terms in a different order, so parameters differ by
a few ULPs per step (relative error about 1e-6 after a 5-epoch update).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from fl.models import ModelSpec, build_model, builtin_spec
from fl.training import LocalResult, TrainConfig, job_seeds, local_update

__all__ = ["BATCHED_MODELS_CPU", "batchable", "batched_local_update"]

# Models for which batching beats the one-after-another loop on CPU. Measured here
# (2 cores, torch 2.14.1, see docs/performance.md): none -- vmap with per-client
# weights moves K times the weight traffic per step and was no faster than the loop for
# mnist_2nn at K = 10..40 (up to 2.5x slower), and the CNNs are compute-bound. On a GPU every
# dropout-free model is batched.
BATCHED_MODELS_CPU: frozenset[str] = frozenset()


def batchable(model: str | ModelSpec, device: torch.device) -> bool:
    """Whether `model` is worth batching on `device` (and can be batched at all)."""
    if _has_dropout(_template(model)):
        return False
    name = model if isinstance(model, str) else model.name
    return device.type != "cpu" or name in BATCHED_MODELS_CPU


def batched_local_update(
    model_name: str | ModelSpec,
    base_params: list[np.ndarray],
    data: list[tuple[torch.Tensor, torch.Tensor]],
    cfg: TrainConfig,
    seeds: list[int],
    device: torch.device | str = "cpu",
) -> list[LocalResult]:
    """`local_update` for K clients at once; client k starts from `base_params[k]` on `data[k]`."""
    k = len(base_params)
    if not k == len(data) == len(seeds) or k == 0:
        raise ValueError(f"need one base vector, data set and seed per client, got {k}, {len(data)}, {len(seeds)}")
    sizes = {int(x.shape[0]) for x, _ in data}
    if len(sizes) != 1:
        raise ValueError(f"batched clients must hold the same number of samples, got sizes {sorted(sizes)}")
    if k == 1:
        (x, y), = data
        return [local_update(model_name, base_params[0], x, y, cfg, seeds[0])]
    device = torch.device(device)
    model = _template(model_name)
    if _has_dropout(model):
        raise ValueError(
            f"model {getattr(model_name, 'name', model_name)!r} uses dropout, which vmap cannot reproduce; train it one client at a time"
        )
    n = sizes.pop()
    params = _stacked_params(model, base_params, device)
    anchor = {name: p.clone() for name, p in params.items()} if cfg.prox_mu > 0 else {}
    xs = torch.stack([x for x, _ in data]).to(device)
    ys = torch.stack([y for _, y in data]).to(device)
    orders = [torch.Generator().manual_seed(job_seeds(s)[0]) for s in seeds]
    rows = torch.arange(k, device=device).unsqueeze(1)
    step = vmap(grad_and_value(_loss_fn(model)))
    loss_sum = torch.zeros(k, device=device)
    with _full_float32():
        _train(step, params, anchor, xs, ys, orders, rows, loss_sum, n, cfg)
    flat = torch.cat([p.reshape(k, -1) for p in params.values()], dim=1).to("cpu", torch.float32).numpy()
    losses = (loss_sum.double() / n).cpu().tolist()
    return [LocalResult(params=flat[i].copy(), num_samples=n, train_loss=float(losses[i])) for i in range(k)]


def _train(step, params, anchor, xs, ys, orders, rows, loss_sum, n: int, cfg: TrainConfig) -> None:
    """The SGD epochs, updating `params` and the last epoch's `loss_sum` in place."""
    for _ in range(cfg.epochs):
        perms = torch.stack([torch.randperm(n, generator=g) for g in orders]).to(xs.device)
        loss_sum.zero_()
        for start in range(0, n, cfg.batch_size):
            batch = perms[:, start : start + cfg.batch_size]
            grads, loss = step(params, xs[rows, batch], ys[rows, batch])
            with torch.no_grad():
                for name, p in params.items():
                    g = grads[name]
                    if anchor:
                        g = g.add(p - anchor[name], alpha=cfg.prox_mu)
                    p.add_(g, alpha=-cfg.lr)
            loss_sum += loss.detach() * batch.shape[1]


@contextmanager
def _full_float32() -> Iterator[None]:
    """No TF32 on GPUs (cuDNN allows it for convolutions by default): keep float32 accuracy."""
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


_TEMPLATES: dict[ModelSpec, nn.Module] = {}


def _template(model: str | ModelSpec) -> nn.Module:
    """One module per model whose structure `functional_call` reuses (its own weights unused)."""
    spec = builtin_spec(model) if isinstance(model, str) else model
    if spec not in _TEMPLATES:
        _TEMPLATES[spec] = build_model(spec).train()
    return _TEMPLATES[spec]


def _has_dropout(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.dropout._DropoutNd) for m in model.modules())


def _stacked_params(model: nn.Module, base_params: list[np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    """K flat vectors as {name: K x shape} tensors, in `model.parameters()` order (the wire order)."""
    flat = torch.from_numpy(np.stack([np.asarray(p, dtype=np.float32) for p in base_params])).to(device)
    expected = sum(p.numel() for p in model.parameters())
    if flat.shape[1] != expected:
        raise ValueError(f"parameter vectors hold {flat.shape[1]} values, the model needs {expected}")
    out, offset = {}, 0
    for name, p in model.named_parameters():
        out[name] = flat[:, offset : offset + p.numel()].reshape(len(base_params), *p.shape).contiguous()
        offset += p.numel()
    return out


def _loss_fn(model: nn.Module):
    def loss(params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(model, params, (x,)), y)

    return loss

