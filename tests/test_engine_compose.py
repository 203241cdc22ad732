"""A run composed in code from its parts, with an interruption source of the user's own."""

from __future__ import annotations

import numpy as np
import pytest

from devices import Device, Interruption, InterruptionSource, Segment, resolve_profile
from fl.server import Server
from fl.strategies import FedAsyncConfig, PPAFLConfig
from sim.engine import DeviceGroup, Monitor, Simulation, Workload, build_fleet


class WorkBudget(InterruptionSource):
    """Fails a job once it has done `seconds` of work (waiting for the link does not count): the hooks a
    per-job failure hazard needs."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.done = seconds, 0.0

    def job_started(self, t: float) -> None:
        self.done = 0.0

    def first_interruption(self, segment: Segment) -> Interruption | None:
        if segment.waiting or self.done + (segment.end - segment.start) <= self.seconds:
            return None
        return Interruption(segment.start + self.seconds - self.done, "worn_out", reason="work budget spent")

    def segment_ended(self, segment: Segment, stop: float) -> None:
        if not segment.waiting:
            self.done += stop - segment.start


def _time_only_workload(n: int, samples: int = 600) -> Workload:
    """What the engine needs of the learning side, without any learning (time-only)."""
    return Workload(
        num_params=100_000, flops_per_sample=2e5, epochs=1, samples=np.full(n, samples), encrypted=False,
        crypto_params={"encrypt": 0, "decrypt": 0}, download_nbytes=400_000, upload_nbytes=400_000,
        aggregator=None, models=None, executor=None, evaluate=lambda _p: (np.nan, np.nan),
    )


def _simulation(n: int, factories=(), seed: int = 0) -> Simulation:
    groups = [DeviceGroup("rpi4", "wifi", resolve_profile("rpi4", "wifi")),
              DeviceGroup("laptop", "ethernet", resolve_profile("laptop", "ethernet"))]
    fleet = build_fleet(groups, [0.5, 0.5], n, np.random.SeedSequence(seed), source_factories=factories)
    server = Server(FedAsyncConfig().build(), aggregator=None, num_clients=n,
                    clients_per_round=4, round_deadline_s=60.0, weight_bits=8, rng=np.random.default_rng(seed))
    return Simulation(fleet, _time_only_workload(n), server, Monitor(600.0, max_versions=200))


def test_a_run_composed_in_code_runs_and_is_reproducible():
    a, b = _simulation(12), _simulation(12)
    a.run()
    b.run()
    assert a.server.version == 200 and a.stop_reason == "reached 200 global versions"
    np.testing.assert_array_equal(a.recorder.events()["time_s"], b.recorder.events()["time_s"])
    assert set(a.recorder.events()["event"]) >= {"download_start", "train_end", "upload_end", "aggregated"}


def test_a_custom_source_interrupts_jobs_through_the_engine():
    def worn(dev: Device) -> InterruptionSource | None:
        return WorkBudget(0.05) if dev.device_class == "rpi4" else None  # Pis wear out, laptops do not

    sim = _simulation(12, factories=[worn])
    sim.run()
    ev = sim.recorder.events()
    worn_out = ev[ev["event"] == "worn_out"]
    assert len(worn_out) > 10 and (worn_out["reason"] == "work budget spent").all()
    pis = {i for i, d in sim.fleet.touched.items() if d.device_class == "rpi4"}
    assert set(worn_out["device"]) <= pis
    sent = sim.fleet.counter("updates_sent")
    assert sent[sorted(pis)].sum() == 0 and sent.sum() > 0  # only laptops finish jobs
    assert sim.fleet.counter("jobs_failed")[sorted(pis)].sum() == len(worn_out)


def test_parts_built_for_different_fleet_sizes_are_refused():
    sim = _simulation(6)
    with pytest.raises(ValueError, match="the fleet has 6 devices but the server expects 7"):
        Simulation(sim.fleet, sim.workload, Server(PPAFLConfig().build(), None, 7, 1, 60.0, 8,
                                                   np.random.default_rng(0)), Monitor(10.0))
