"""Shared fixtures: the embedded data set and the optional full-MNIST folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from fl.data import Dataset, load_dataset

# One intra-op thread per test process: the models are small, and with more
# OpenMP threads than free cores (pytest-xdist, busy CI) every step stalls.
torch.set_num_threads(1)

_DEFAULT_SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The shared data root (../shared/data beside the checkout, or $PPAFL_SHARED_DATA).

    Skips the test when it lacks MNIST/raw.
    """
    root = Path(os.environ.get("PPAFL_SHARED_DATA", _DEFAULT_SHARED_DATA))
    if not (root / "MNIST" / "raw").is_dir():
        pytest.skip(
            f"full MNIST not found at {root / 'MNIST' / 'raw'}; put the shared data "
            f"folder beside the checkout or set PPAFL_SHARED_DATA"
        )
    return root


@pytest.fixture(scope="session")
def mnist5k() -> Dataset:
    """The embedded 5,000-sample MNIST subset, loaded once per session."""
    return load_dataset("mnist5k")


def _same_outputs(a: Path, b: Path) -> None:
    """Every output file of two run directories byte-identical, except summary.json's wall_clock_s."""
    from sim.runner import OUTPUT_FILES

    for name in OUTPUT_FILES:
        if name == "summary.json":
            sa, sb = (json.loads((d / name).read_text()) for d in (a, b))
            sa.pop("wall_clock_s"), sb.pop("wall_clock_s")
            assert sa == sb
        else:
            assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.fixture
def assert_same_outputs():
    """`assert_same_outputs(dir_a, dir_b)`: two runs wrote the same outputs (wall clock aside)."""
    return _same_outputs
