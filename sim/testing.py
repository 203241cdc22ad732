"""Test doubles shipped as components (FLSim ships its scripted event generators the same way), so that a
strategy, a server or an engine part can be tested, or a study scripted, with exact timings and no learning.

- `ScriptedNetwork`: the server's world (`fl.server.Network`) in a test: every client
  available, timers that fire only when told, and a client side whose updates are vectors
  the test chooses (`GivenUpdates`), sealed by a real codec;
- `scripted_workload`: what the engine needs of the learning side, without building or
  training a model (a time-only workload of given sizes);
- `ScriptedInterruptions`: an interruption source that strikes at scripted times;
- `plugins_loaded`: plugins for the duration of a block, registries restored after it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from devices import Interruption, InterruptionSource, Segment
from fl.jobs import ClientUpload, Job, TrainingTask
from fl.server import PayloadRef, UpdateArrived
from sim.engine.workload import Workload
from sim.plugins.loading import PluginSource, forget_plugins, load_plugins, loaded_plugins

__all__ = ["GivenUpdates", "ScriptedInterruptions", "ScriptedNetwork", "plugins_loaded", "scripted_workload"]


class GivenUpdates:
    """An executor whose clients 'train' to vectors the test chose, sealed by `codec` (a `fl.secure.ClientCodec`)."""

    name = "given"

    def __init__(self, codec: Any, num_samples: int = 100) -> None:
        self.codec, self.num_samples = codec, num_samples
        self.vectors: dict[int, np.ndarray] = {}

    def give(self, client: int, version: int, vec: np.ndarray) -> Job:
        """A job of `client` on global `version` whose training yields `vec`."""
        token = len(self.vectors)  # the task's seed names its vector
        self.vectors[token] = vec
        return self.submit(TrainingTask(client, version, token), np.zeros(vec.size, np.float32))

    def submit(self, task: TrainingTask, base_params: np.ndarray) -> Job:
        return Job(self, task, base_params)

    def resolve(self, jobs: list[Job]) -> None:
        for j in jobs:
            j.set_result(ClientUpload(self.codec.encrypt(self.vectors[j.task.seed]), self.num_samples, 0.0))

    def close(self) -> None:
        """Nothing to release."""


@dataclass
class ScriptedNetwork:
    """The server's world in a test: clients always available, timers that fire only when told, and a client side
    (the key holders' models, `fl.global_model.GlobalModels`, and an executor of given updates).

    Everything the server does is recorded: `invited` (client, version), `events` (name,
    device, details), `versions` made, `agent_calls` (client, base version) and the
    vectors of retrained agents.
    """

    models: Any
    executor: GivenUpdates
    now: float = 0.0
    invited: list[tuple[int, int]] = field(default_factory=list)
    timers: list[tuple[float, Callable[[ScriptedNetwork], None]]] = field(default_factory=list)
    events: list[tuple[str, int, dict[str, Any]]] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)
    work: dict[int, Job] = field(default_factory=dict)
    agent_calls: list[tuple[int, int]] = field(default_factory=list)
    agent_vectors: list[np.ndarray] = field(default_factory=list)

    def available(self, client: int) -> bool:
        return True

    def invite(self, client: int, version: int) -> bool:
        self.invited.append((client, version))
        return True

    def call_at(self, time: float, fn: Callable[[ScriptedNetwork], None]) -> None:
        self.timers.append((time, fn))

    def log(self, event: str, device: int = -1, **info: Any) -> None:
        self.events.append((event, device, info))

    def fetch(self, refs: Sequence[PayloadRef]) -> list[tuple[Any, str | None]]:
        jobs = [self.work.pop(r.uid) for r in refs]
        return [(j.result().payload, j.result().problem) for j in jobs]

    def publish(self, plan: Any, aggregate: Any, weights: Sequence[int]) -> int | None:
        version: int | None = self.models.apply(plan, aggregate, weights)
        return version

    def version_created(self, version: int) -> None:
        self.versions.append(version)

    def update(self, client: int, base: int, vec: np.ndarray) -> UpdateArrived:
        """The arrival of `client`'s update `vec`, trained on version `base`."""
        ref = PayloadRef(len(self.executor.vectors))
        self.work[ref.uid] = self.executor.give(client, base, vec)
        return UpdateArrived(client, base, self.executor.num_samples, self.now, ref)

    def train_agent(self, client: int, base_version: int) -> UpdateArrived:
        """A retrained agent: a new vector for every call (seeded by the call's number), recorded with the model it
        started from."""
        self.agent_calls.append((client, base_version))
        size = int(np.asarray(self.models.current).size)
        vec = np.random.default_rng(len(self.agent_calls)).uniform(-1, 1, size).astype(np.float32)
        self.agent_vectors.append(vec)
        return self.update(client, base_version, vec)

    def fire_deadline(self) -> None:
        """Fire the most recent round deadline."""
        _, fn = self.timers.pop()
        fn(self)

    def fire_due(self) -> None:
        """Run every timer due now (held-back updates released by an aggregation), oldest first."""
        due = [t for t in self.timers if t[0] <= self.now]
        self.timers = [t for t in self.timers if t[0] > self.now]
        for _, fn in due:
            fn(self)


def scripted_workload(
    num_clients: int, *, num_params: int = 100_000, flops_per_sample: float = 2e5, samples: int = 600,
    update_nbytes: int = 400_000, epochs: int = 1,
) -> Workload:
    """What the engine needs of the learning side, without any learning or model: every client holds `samples`
    samples, a job moves `update_nbytes` each way [bytes] and trains at `flops_per_sample` [FLOP]."""
    return Workload(
        num_params=num_params, flops_per_sample=flops_per_sample, epochs=epochs,
        samples=np.full(num_clients, samples), encrypted=False, crypto_params={"encrypt": 0, "decrypt": 0},
        download_nbytes=update_nbytes, upload_nbytes=update_nbytes, aggregator=None, models=None, executor=None,
        evaluate=lambda _p: (np.nan, np.nan),
    )


class ScriptedInterruptions(InterruptionSource):
    """Strikes a device's jobs at scripted simulated times: each `(time, event, resume_at)` interrupts, once, the
    segment running at `time` with `event` (logged); `resume_at` None ends the job there, else the job waits until
    then and goes on (`restart`: the phase starts over)."""

    def __init__(self, script: Sequence[tuple[float, str, float | None]], restart: bool = False) -> None:
        self.script = sorted(script)
        self.restart = restart

    def first_interruption(self, segment: Segment) -> Interruption | None:
        for time, event, resume_at in self.script:
            if segment.start <= time < segment.end and not segment.waiting:
                return Interruption(time, event, resume_at=resume_at, restart=self.restart and resume_at is not None,
                                    reason="scripted")
        return None

    def segment_ended(self, segment: Segment, stop: float) -> None:
        """Each scripted strike happens once: those up to the segment's end are spent."""
        self.script = [entry for entry in self.script if entry[0] > stop]


@contextmanager
def plugins_loaded(specs: Sequence[str] = ()) -> Iterator[tuple[PluginSource, ...]]:
    """Load plugins (files or modules) for the duration of a block; afterwards every registry and the loaded
    plugins are as before (what the block registered is gone). Yields the loaded sources."""
    from sim.plugins import registries

    kinds = [getattr(registries, name) for name in registries.__all__ if name.isupper()]
    before = [registry.snapshot() for registry in kinds]
    loaded_before = loaded_plugins()
    try:
        yield load_plugins(specs)
    finally:
        forget_plugins(loaded_before)
        for registry, snapshot in zip(kinds, before, strict=True):
            registry.restore(snapshot)
