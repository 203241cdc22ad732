"""Shared fixtures: the embedded data set, the optional full-MNIST folder, output comparison, object graphs."""

from __future__ import annotations

import functools
import json
import os
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


def _cell(cell: types.CellType) -> Any:
    try:
        return cell.cell_contents
    except ValueError:  # an empty cell
        return None


def _reachable(root: Any) -> Iterator[Any]:
    """Every object reachable from `root` by strong references a program can follow.

    Follows containers, instance attributes (``__dict__`` and ``__slots__``), bound methods'
    ``__self__``, closures and defaults of functions, and partials. Stops at modules and
    classes (shared code, not state) and at weak references. Nothing is excluded by name.
    """
    seen: set[int] = set()
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (types.ModuleType, type)):
            continue
        seen.add(id(obj))
        yield obj
        if isinstance(obj, (str, bytes, bytearray, int, float, complex, bool, type(None))):
            continue
        if isinstance(obj, dict):
            stack += [*obj.keys(), *obj.values()]
        elif isinstance(obj, (list, tuple, set, frozenset)) or type(obj).__name__ == "deque":
            stack += list(obj)
        if isinstance(obj, types.MethodType):
            stack += [obj.__self__, obj.__func__]
        elif isinstance(obj, types.FunctionType):
            stack += [_cell(c) for c in obj.__closure__ or ()]
            stack += [*(obj.__defaults__ or ()), *(obj.__kwdefaults__ or {}).values()]
        elif isinstance(obj, functools.partial):
            stack += [obj.func, *obj.args, *obj.keywords.values()]
        if hasattr(obj, "__dict__") and not isinstance(obj, types.FunctionType):
            stack += list(vars(obj).values())
        for cls in type(obj).__mro__:
            for name in getattr(cls, "__slots__", ()):
                if name not in ("__weakref__", "__dict__") and hasattr(obj, name):
                    stack.append(getattr(obj, name))


@pytest.fixture
def reachable():
    """`reachable(obj)`: every object reachable from obj (see `_reachable`)."""
    return lambda root: list(_reachable(root))
