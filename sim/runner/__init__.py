"""A run of a scenario: up-front refusals, the run, its outputs in a resumable run directory.

`run_scenario(scenario, out_dir)` (`sim.runner.run`) checks what would not fit or could not
happen (`sim.runner.preflight`), runs the simulation and writes its outputs atomically
into a locked run directory with a manifest (`sim.runner.rundir`); `RunProgress` is the
console progress bar (`sim.runner.progress`).
"""

from sim.runner.progress import RunProgress
from sim.runner.run import OUTPUT_FILES, RunResult, projected_cache_bytes, run_scenario, write_outputs

__all__ = [
    "OUTPUT_FILES", "RunProgress", "RunResult", "projected_cache_bytes", "run_scenario",
    "write_outputs",
]
