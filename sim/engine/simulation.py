"""The SimPy engine: a fleet of devices training for a server, in simulated time.

A run is composed of parts, each with one job (Vessim's `Environment` is the model):

- a `Fleet` (`sim.engine.fleet`): the devices, passive until touched;
- a `Workload` (`sim.engine.workload`): data, model, codec, executor, global model versions;
- a `Server` (`fl.server`): the untrusted aggregator and its strategy;
- a `Monitor` (`sim.engine.monitor`): evaluation schedule and stop conditions, and any
  other `Observer`s (e.g. a progress bar);
- a `Recorder` (`sim.engine.recorder`): the event log and the metrics.

`Simulation(fleet, workload, server, monitor, ...)` wires parts built in code and
`run()` returns a `RunResult` (`sim.engine.result`); `Simulation.from_scenario(scenario,
...)` builds the parts from a validated scenario (`sim.assembly`). Each invited device
runs one `DeviceJob` (`sim.engine.device_job`), a SimPy process that failures interrupt;
it reaches the run through the `JobHost` protocol, observers through `RunView`. Gradient
work is deferred to the executor and never moves the simulated clock, so the same
scenario and seed give the same numbers on any machine and executor. A watchdog
(`sim.engine.watchdog`) stops a run that makes no simulated progress or goes over its
event or memory budget.
"""

from __future__ import annotations

import gc
import math
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
import simpy
from simpy.core import StopSimulation

from devices import BatteryDepletion
from fl.server import Network, PayloadRef, Server, UpdateArrived
from fl.strategies import AggregationPlan
from sim.engine.device_job import DeviceJob, JobStopped
from sim.engine.fleet import Fleet
from sim.engine.monitor import Monitor
from sim.engine.observers import Observer
from sim.engine.recorder import Recorder
from sim.engine.result import FinishedRun, RunResult, collect
from sim.engine.watchdog import RunBudget, Watchdog
from sim.engine.workload import Workload

if TYPE_CHECKING:
    from fl.jobs import Job

__all__ = ["DIVERGED_AFTER", "Simulation"]

_CHUNK = 2048  # SimPy steps between two watchdog checks
_GC_EVERY = 256  # chunks between two collections of the young generations while the engine runs
DIVERGED_AFTER = 50  # non-finite updates in a row, with no version between, that end a run as diverged


class Simulation:
    """One run: the SimPy environment and the parts it wires (see the module docstring).

    The simulation is the server's `Network`: the server reaches devices, timers, the
    clients' payloads and the key holders only through the calls it makes on it. It is
    also the `JobHost` of every device job and the `RunView` of every observer.
    `seed` seeds the training jobs (`fl.jobs.task_seed`); `budget` bounds the run; `name`
    names it in error messages and the summary; `observers` are called after the monitor (and ended before it).
    """

    def __init__(
        self,
        fleet: Fleet,
        workload: Workload,
        server: Server,
        monitor: Monitor,
        *,
        seed: int = 0,
        recorder: Recorder | None = None,
        budget: RunBudget | None = None,
        name: str | None = None,
        observers: Sequence[Observer] = (),
    ) -> None:
        if server.num_clients != len(fleet) or len(workload.samples) != len(fleet):
            raise ValueError(
                f"the fleet has {len(fleet)} devices but the server expects {server.num_clients} clients and the "
                f"workload holds {len(workload.samples)}; build them for the same number of devices"
            )
        self.env = simpy.Environment()
        self.fleet, self.workload, self.server, self.monitor = fleet, workload, server, monitor
        self.observers: tuple[Observer, ...] = (monitor, *observers)
        self.name = name
        self.models = workload.models
        self.recorder = recorder if recorder is not None else Recorder()
        self.seed = seed
        self.budget = budget if budget is not None else RunBudget()
        what = "the run" if name is None else f"scenario {name!r}"
        self.watchdog = Watchdog(self.budget, len(fleet), lambda: self.recorder.num_events, self.recorder.recent, what)
        self._work: weakref.WeakKeyDictionary[PayloadRef, Job] = weakref.WeakKeyDictionary()
        self._next_ref = 0
        self._running: dict[int, DeviceJob] = {}
        self._unusable_in_a_row = 0  # updates (or aggregates) refused as not finite since the last version
        self._stopped: simpy.Event | None = None
        self.stop_reason = ""

    @classmethod
    def from_scenario(cls, scenario: Any, **options: Any) -> Simulation:
        """Build every part from a validated `sim.scenario.Scenario` (see `sim.assembly.build_simulation` for the
        options: executor, progress, cache, budget, plugins)."""
        from sim.assembly import build_simulation  # the one place a scenario becomes parts

        return build_simulation(scenario, **options)

    # ------------------------------------------------------------- the server's Network
    @property
    def now(self) -> float:
        return float(self.env.now)

    def available(self, client: int) -> bool:
        return not self.fleet.busy[client] and self.fleet.online(client, self.env.now)

    def invite(self, client: int, version: int) -> bool:
        dev = self.fleet.device(client)
        if dev.availability.declines_invitation():
            self.fleet.add(client, "invitations_declined")
            self.log("invitation_declined", client, version=version)
            return False
        self.fleet.busy[client] = 1
        self._running[client] = DeviceJob(self, client, version)
        return True

    def call_at(self, time: float, fn: Callable[[Network], None]) -> None:
        self.env.timeout(max(0.0, time - self.env.now)).callbacks.append(lambda _ev: fn(self))

    def fetch(self, refs: Sequence[PayloadRef]) -> list[tuple[Any, str | None]]:
        """The payloads behind `refs`: the clients' training runs now (all of it at once, so executors batch)."""
        from fl.executors import resolve_all

        jobs = [self._work.pop(ref) for ref in refs]
        resolve_all(list(jobs))
        uploads = [job.result() for job in jobs]
        for u in uploads:
            self._unusable_in_a_row = self._unusable_in_a_row + 1 if u.payload is None and u.problem else 0
        self._stop_if_diverged()
        return [(u.payload, u.problem if u.payload is None else None) for u in uploads]

    def _stop_if_diverged(self) -> None:
        """End a run whose training diverged: it would retrain from the same model and fail again, forever."""
        most = max(DIVERGED_AFTER, 5 * self.server.clients_per_round)
        if self._unusable_in_a_row >= most:
            self.stop(
                f"training diverged: the last {self._unusable_in_a_row} updates or aggregates were not finite and no "
                "global version was made in between; lower training.lr (or strategy.lr)"
            )

    def publish(self, plan: AggregationPlan, aggregate: Any, weights: Sequence[int]) -> int | None:
        """The key holders decrypt the aggregate into the next global version (time-only: count it); None when
        that version would not be finite."""
        if self.models is None:
            return self.server.version + 1
        version = self.models.apply(plan, aggregate, weights)
        if version is None:
            self._unusable_in_a_row += 1
            self._stop_if_diverged()
        return version

    def log(self, event: str, device: int = -1, **info: Any) -> None:
        version = info.pop("version", self.server.version)
        self.recorder.event(self.env.now, event, device, version, **info)

    def note(self, event: str, device: int) -> None:
        self.recorder.event(self.env.now, event, device, self.server.version)

    def train_agent(self, client: int, base_version: int) -> UpdateArrived:
        """`client` retrained from global `base_version` now, as the reference code's update agents are:
        a deferred job like any update, at no simulated time or energy (a simulation shortcut)."""
        from fl.jobs import TrainingTask

        w, ref = self.workload, None
        if w.executor is not None and self.models is not None:
            entropy = [self.seed, client, base_version, self.server.version, 1]  # 1: not a device job
            seed = int(np.random.SeedSequence(entropy).generate_state(2, np.uint64)[0] >> np.uint64(1))
            ref = PayloadRef(self._next_ref)
            self._next_ref += 1
            self._work[ref] = w.executor.submit(TrainingTask(client, base_version, seed), self.models.get(base_version))
        self.log("agent_retrained", client, base_version=base_version)
        return UpdateArrived(client, base_version, w.num_samples(client), self.now, ref)

    def version_created(self, version: int) -> None:
        self._unusable_in_a_row = 0
        if self.models is not None:
            self.models.forget_before(self.server.oldest_version_in_use())
        for observer in self.observers:
            observer.version_created(self, version)

    # ------------------------------------------------------------- device jobs
    def start_training(self, client: int, version: int, job_number: int) -> PayloadRef | None:
        """Submit the training a device starts now; the handle its upload will carry (None: time-only)."""
        w = self.workload
        if w.executor is None or self.models is None:
            return None
        from fl.jobs import TrainingTask, task_seed

        ref = PayloadRef(self._next_ref)
        self._next_ref += 1
        task = TrainingTask(client, version, task_seed(self.seed, client, job_number))
        self._work[ref] = w.executor.submit(task, self.models.get(version))
        return ref

    def job_finished(self, job: DeviceJob, ref: PayloadRef | None) -> None:
        """A device's upload completed: the update reaches the server."""
        c = job.client
        self.fleet.busy[c] = 0
        del self._running[c]
        self.fleet.add(c, "updates_sent")
        self.server.receive(UpdateArrived(c, job.version, self.workload.num_samples(c), self.now, ref), self)

    def job_stopped(self, job: DeviceJob, stop: JobStopped) -> None:
        """A device's job ended early; the server is told, and an emptied battery's recharge is logged when due."""
        c, hit = job.client, stop.interruption
        self.fleet.busy[c] = 0
        del self._running[c]
        self.fleet.add(c, "jobs_failed")
        if hit.event == BatteryDepletion.EVENT:
            back = job.device.battery.time_recharged(self.now)
            if back < min(self.monitor.max_time_s, job.device.availability.dropout_time):
                self.call_at(back, lambda _net: self.log("battery_recharged", c))
        self.server.job_failed(c, f"{hit.event} during {stop.phase}", self)

    # ------------------------------------------------------------- what observers see
    @property
    def version(self) -> int:
        return self.server.version

    @property
    def stats(self) -> Mapping[str, int]:
        return self.server.stats

    def evaluate_global_model(self) -> tuple[float, float]:
        """Accuracy and loss of the current global model (NaN in time-only runs)."""
        if self.models is None:
            return math.nan, math.nan
        return self.workload.evaluate(self.models.current)

    def evaluated(self, accuracy: float) -> None:
        for observer in self.observers:
            observer.evaluated(self, accuracy)

    def stop(self, reason: str) -> None:
        """End the run now, for `reason` (the first reason given wins)."""
        if self._stopped is not None and not self._stopped.triggered:
            self.stop_reason = reason
            self._stopped.succeed()

    # ------------------------------------------------------------- the run
    def run(self) -> RunResult:
        """Run until the simulated time limit, the version limit, the target accuracy or a stop; its result.

        Raises `sim.engine.watchdog.BudgetExceeded` if the run goes over its budget (see `RunBudget`).
        The executor is closed at the end, however the run ends.
        """
        t0 = time.perf_counter()
        try:
            self._simulate()
        finally:
            if self.workload.executor is not None:
                self.workload.executor.close()
        return collect(self.finished(), time.perf_counter() - t0)

    def finished(self) -> FinishedRun:
        """What the run's result is made from (its parts and how it ended)."""
        return FinishedRun(self.fleet, self.workload, self.server, self.monitor, self.recorder, self.now, self.seed,
                           self.name, self.stop_reason)

    def _simulate(self) -> None:
        self._stopped = self.env.event()
        for observer in self.observers:
            observer.start(self)
        self.server.start(self)
        self._stopped.callbacks.append(StopSimulation.callback)
        step, watchdog, env = self.env.step, self.watchdog, self.env
        chunks = 0
        try:
            with _engine_gc():
                while True:
                    for _ in range(_CHUNK):
                        step()
                    watchdog.check(env.now, _CHUNK)
                    chunks += 1
                    if chunks % _GC_EVERY == 0:
                        gc.collect(1)
        except StopSimulation:
            pass
        self._end()

    def _end(self) -> None:
        """At the run's end: the final evaluation, running jobs' energy and bytes so far, departures."""
        end = self.now
        for observer in reversed(self.observers):  # ended last-in first-out: the monitor's final row comes last
            observer.end(self)
        for job in self._running.values():
            job.settle(end)
        left = self.fleet.left_by(end)
        self.recorder.events_at(self.fleet.dropout_s[left].tolist(), "device_left", left.tolist())


@contextmanager
def _engine_gc() -> Iterator[None]:
    """While the engine runs, Python's automatic cyclic GC is off.

    The engine's objects die by reference counting (a run leaves no cyclic garbage: `gc.collect()` after one
    finds none), and the automatic GC would walk the growing set of touched devices again and again (it took
    ~30% of the engine's time). The run loop still collects the young generations every `_GC_EVERY` chunks,
    so cycles made elsewhere (e.g. by training) cannot pile up.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
