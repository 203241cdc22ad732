"""Failure sources of a fleet: each a registered kind (`sim.plugins.FAILURES`) with its settings, attached to
every device when it is built, each drawing from its own seed.

A source's seed is spawned from the fleet's by its `tag`, so adding or removing one source
never changes what another draws (the built-in kinds keep fixed tags; `sim.assembly`
derives a plugin's from its name and position).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from devices.failure_sources import PerDevice, SourceContext

__all__ = ["FailureSpec", "failure_factories"]


@dataclass(frozen=True)
class FailureSpec:
    """One failure source of a run: `factory(settings, context)` gives each device its source; `tag` seeds it."""

    factory: Callable[[Any, SourceContext], PerDevice]
    settings: Any
    tag: int


def failure_factories(
    specs: Sequence[FailureSpec], num_devices: int, phases: tuple[str, ...], seed: np.random.SeedSequence
) -> list[PerDevice]:
    """Per-device source factories for `specs` (for `build_fleet`'s `source_factories`), each with its own seed
    spawned from `seed` by its tag (`seed` itself is not advanced)."""
    out = []
    for spec in specs:
        own = np.random.SeedSequence(seed.entropy, spawn_key=(*seed.spawn_key, 0x5EED0000 + spec.tag))
        out.append(spec.factory(spec.settings, SourceContext(num_devices, phases, own)))
    return out
