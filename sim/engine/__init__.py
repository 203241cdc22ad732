"""The SimPy engine: a fleet of devices training for a server, in simulated time. It knows no scenario.

Compose a run in code from its parts (`Simulation(fleet, workload, server, monitor)`),
run it (`.run()` returns a `RunResult`), save it (`RunResult.save(dir)`); or build the
parts from a scenario with `Simulation.from_scenario`. Test doubles: `sim.testing`.
"""

from sim.engine.device_job import DeviceJob, JobHost, JobStopped
from sim.engine.failures import FailureSpec, failure_factories
from sim.engine.fleet import COUNTERS, INTERRUPTION_COUNTERS, JOB_PHASES, DeviceGroup, Fleet, SourceFactory, build_fleet
from sim.engine.jobtime import TRAIN_FLOPS_PER_FORWARD, JobCost, JobTime, least_job_time, train_flops
from sim.engine.monitor import Monitor
from sim.engine.observers import Observer, RunView
from sim.engine.recorder import Recorder
from sim.engine.result import OUTPUT_FILES, RunResult, time_to_accuracy
from sim.engine.simulation import DIVERGED_AFTER, Simulation
from sim.engine.watchdog import BudgetExceeded, RunBudget
from sim.engine.workload import Encryption, Workload, learning_workload, time_only_workload

__all__ = [
    "COUNTERS",
    "DIVERGED_AFTER",
    "INTERRUPTION_COUNTERS",
    "JOB_PHASES",
    "OUTPUT_FILES",
    "TRAIN_FLOPS_PER_FORWARD",
    "BudgetExceeded",
    "DeviceGroup",
    "DeviceJob",
    "Encryption",
    "FailureSpec",
    "Fleet",
    "JobCost",
    "JobHost",
    "JobStopped",
    "JobTime",
    "Monitor",
    "Observer",
    "Recorder",
    "RunBudget",
    "RunResult",
    "RunView",
    "Simulation",
    "SourceFactory",
    "Workload",
    "build_fleet",
    "failure_factories",
    "learning_workload",
    "least_job_time",
    "time_only_workload",
    "time_to_accuracy",
    "train_flops",
]
