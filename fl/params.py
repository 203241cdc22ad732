"""Model parameters as one flat ``float32`` numpy vector (the wire format).

The order is ``model.parameters()`` order; the models have no buffers, so
the vector is the model's whole state.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["get_flat", "set_flat"]


def get_flat(model: nn.Module) -> np.ndarray:
    """Copy ``model``'s parameters into a new flat ``float32`` vector."""
    with torch.no_grad():
        flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    return flat.to(dtype=torch.float32, device="cpu").numpy()


def set_flat(model: nn.Module, flat: np.ndarray) -> None:
    """Load the flat vector ``flat`` into ``model``'s parameters, in place."""
    vector = np.asarray(flat)
    expected = sum(p.numel() for p in model.parameters())
    if vector.ndim != 1 or vector.size != expected:
        raise ValueError(
            f"parameter vector has shape {vector.shape}, but "
            f"{type(model).__name__} needs a 1-D vector of {expected} values"
        )
    if not np.issubdtype(vector.dtype, np.floating):
        raise ValueError(f"parameter vector must be floating point, got dtype {vector.dtype}")
    source = torch.from_numpy(np.require(vector, np.float32, ["C", "W"]))
    with torch.no_grad():
        offset = 0
        for p in model.parameters():
            p.copy_(source[offset : offset + p.numel()].view_as(p))
            offset += p.numel()
