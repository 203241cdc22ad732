"""Where sweep cells run: worker processes on this machine, or tasks on a Ray cluster.

A backend runs `CellTask`s (a cell's scenario, the sweep's `cells/` folder, the cell's id
and the executor of its training) with `run_cell`, which builds the cell's run directory
as `cells/.partial-<id>/` (resumable, see `sim.runner`) and renames it to `cells/<id>/`
once complete. It reports each cell, and the node it ran on, as the cell finishes, and
stops at the first failed cell with a `SweepCellError` naming it. Cells train with one
torch thread wherever they run, so their numbers do not depend on the backend.

- `local` (`LocalBackend`): `jobs` spawned worker processes (1: in this process).
- `ray` (`RayBackend`): each cell a Ray task of one CPU, spread over the nodes, on the
  cluster at `address` (default: RAY_ADDRESS, else a Ray started here for the sweep), at
  most `jobs` at once. Run directories live on shared storage: the node that runs a
  cell writes it straight into the sweep directory, so on a cluster `--out` must be a
  folder every node mounts at the same path (NFS or another shared file system). Each
  cell first checks that its node sees the folder the driver wrote to (and runs the
  driver's ppafl version) and fails with a message saying so where it does not. A cell
  whose worker process or node dies is retried (up to `CELL_RETRIES` times) and resumes
  from its partial directory.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, ClassVar

from sim.plugins import PluginSource, activate

__all__ = [
    "BACKENDS",
    "CELL_RETRIES",
    "PARTIAL_PREFIX",
    "Backend",
    "CellTask",
    "LocalBackend",
    "RayBackend",
    "SweepCellError",
    "make_backend",
    "run_cell",
]

BACKENDS = ("local", "ray")
PARTIAL_PREFIX = ".partial-"
CELL_RETRIES = 3  # Ray reruns a cell whose worker or node died this many times
_VISIBLE = ".ray-visible"  # the driver writes a token here; every Ray cell reads it back

Done = Callable[[str, str], None]
"""Called with (cell id, node it ran on) as each cell finishes."""


class SweepCellError(RuntimeError):
    """A cell's run failed; the message names the cell and the error."""


@dataclass(frozen=True)
class CellTask:
    """One cell to run: its scenario (as plain data), the sweep's cells folder, its id, its executor, and the
    plugins to load first (their sources travel with the task)."""

    scenario: dict[str, Any]
    cells_dir: str
    cell_id: str
    executor: str
    plugins: tuple[PluginSource, ...] = ()


def run_cell(task: CellTask) -> None:
    """Run one cell in `cells/.partial-<id>/` (resumable), then rename it into place (all or nothing)."""
    from fl.executor_base import torch_threads
    from sim.runner.run import run_scenario
    from sim.scenario import scenario_from_dict

    partial = Path(task.cells_dir) / f"{PARTIAL_PREFIX}{task.cell_id}"
    final = Path(task.cells_dir) / task.cell_id
    try:
        activate(task.plugins)  # before the scenario, which may name their components
        if not _finished(partial):
            with torch_threads(1):  # cores go to cells: every backend trains the same way
                run_scenario(scenario_from_dict(task.scenario, source=task.cell_id), partial, executor=task.executor)
        if final.exists():  # a leftover without summary.json (finished cells are never rerun)
            shutil.rmtree(final)
        os.replace(partial, final)
    except Exception as exc:  # noqa: BLE001  (any failure is reported with the cell's name)
        raise SweepCellError(f"sweep cell {task.cell_id} failed: {type(exc).__name__}: {exc}") from None


def _finished(partial: Path) -> bool:
    """A partial directory whose run finished (the sweep stopped before renaming it)."""
    from sim.runner.rundir import RunDirError, read_manifest

    try:
        manifest = read_manifest(partial) if partial.is_dir() else None
    except RunDirError:
        return False
    return manifest is not None and manifest["status"] == "finished"


class Backend(ABC):
    """Runs sweep cells somewhere; see the module docstring."""

    name: ClassVar[str]

    @abstractmethod
    def check(self, executor: str) -> None:
        """Refuse (ValueError, ImportError) what this backend cannot run, before anything is written."""

    @abstractmethod
    def run(self, tasks: list[CellTask], done: Done) -> None:
        """Run every task, calling `done` as each finishes; raise SweepCellError at the first failure."""


# --------------------------------------------------------------------- local
class LocalBackend(Backend):
    """Cells in `jobs` spawned worker processes (default: one per CPU); 1 = one after another here."""

    name = "local"

    def __init__(self, jobs: int | None = None) -> None:
        if jobs is not None and jobs < 1:
            raise ValueError(f"--jobs {jobs}: need at least 1 worker process")
        self.jobs = jobs or os.cpu_count() or 1

    def check(self, executor: str) -> None:
        if executor == "process" and self.jobs > 1:
            raise ValueError(
                "--executor process starts worker processes of its own, which sweep workers cannot start; "
                "use --jobs 1 --executor process (cells one after another, each on all cores), "
                "or --jobs N with --executor sequential (N cells side by side)"
            )

    def run(self, tasks: list[CellTask], done: Done) -> None:
        host = socket.gethostname()
        jobs = min(self.jobs, len(tasks))
        if jobs <= 1:
            for task in tasks:
                run_cell(task)
                done(task.cell_id, host)
            return
        with get_context("spawn").Pool(jobs, _init_worker, (os.getpid(),)) as pool:  # exit terminates the workers
            for cell_id in pool.imap_unordered(_run_in_worker, tasks, chunksize=1):
                done(cell_id, host)


def _init_worker(parent: int) -> None:
    """Worker processes: one thread each (cores go to cells); exit when the sweep process dies."""
    os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)  # orphaned (the sweep was killed): stop; the cell resumes when the sweep is rerun


def _run_in_worker(task: CellTask) -> str:
    run_cell(task)
    return task.cell_id


# --------------------------------------------------------------------- ray
class RayBackend(Backend):
    """Cells as Ray tasks (one CPU each, spread over the nodes) on the cluster at `address`, `jobs` at most at once."""

    name = "ray"

    def __init__(self, address: str | None = None, jobs: int | None = None) -> None:
        if jobs is not None and jobs < 1:
            raise ValueError(f"--jobs {jobs}: need at least 1 cell at a time")
        self.address, self.jobs = address, jobs

    def check(self, executor: str) -> None:
        from fl.ray_executor import import_ray

        if executor == "process":
            raise ValueError(
                "--executor process starts worker processes of its own, which a Ray cell (one CPU) must not; "
                "use --executor ray to spread each cell's training over the cluster as well, or --executor sequential"
            )
        import_ray()  # not installed: say how to install it before anything is written

    def run(self, tasks: list[CellTask], done: Done) -> None:
        from fl.ray_executor import connect_ray, import_ray
        from sim.runner.rundir import ppafl_version

        ray = import_ray()
        owns = connect_ray(self.address)
        folders = [Path(d) for d in dict.fromkeys(t.cells_dir for t in tasks)]
        token = uuid.uuid4().hex
        pending: dict[Any, CellTask] = {}
        try:
            for folder in folders:
                (folder / _VISIBLE).write_text(token)
            remote = ray.remote(num_cpus=1, scheduling_strategy="SPREAD", max_retries=CELL_RETRIES)(_ray_cell)
            queue, limit, version, here = deque(tasks), self.jobs or len(tasks), ppafl_version(), os.getcwd()
            while queue or pending:
                while queue and len(pending) < limit:
                    task = queue.popleft()
                    pending[remote.remote(task, token, version, here)] = task
                ready, _ = ray.wait(list(pending), num_returns=1)
                task = pending.pop(ready[0])
                done(task.cell_id, _node_of(ray, ready[0], task))
        finally:
            for folder in folders:
                (folder / _VISIBLE).unlink(missing_ok=True)
            if owns:
                ray.shutdown()  # ends this driver's job: Ray stops its running cells, which resume next time
            else:
                for ref in pending:  # an error or Ctrl-C in a process that stays on Ray: stop the other cells
                    ray.cancel(ref)  # (KeyboardInterrupt in the cell: its run is marked interrupted)


def _node_of(ray: Any, ref: Any, task: CellTask) -> str:
    """The node a finished cell ran on; its failure as a SweepCellError naming the cell."""
    try:
        return str(ray.get(ref))
    except ray.exceptions.RayTaskError as exc:
        cause = exc.cause
        if isinstance(cause, SweepCellError):
            raise SweepCellError(str(cause)) from None
        raise SweepCellError(f"sweep cell {task.cell_id} failed on Ray: {type(cause).__name__}: {cause}") from None
    except ray.exceptions.RayError as exc:  # its worker or node was lost more often than CELL_RETRIES
        raise SweepCellError(f"sweep cell {task.cell_id} failed on Ray: {type(exc).__name__}: {exc}") from None


def _ray_cell(task: CellTask, token: str, version: str, cwd: str) -> str:
    """The Ray task: check this node can serve the sweep, run the cell; the node's id.

    Runs in the driver's working directory where the node has it (shared storage), so
    relative paths (`--out`, `--set data.root=...`) mean what they mean to the driver.
    """
    from fl.ray_executor import import_ray

    node = import_ray().get_runtime_context().get_node_id()
    where = f"Ray node {socket.gethostname()} ({node[:12]})"
    before = os.getcwd()
    try:
        if os.path.isdir(cwd):
            os.chdir(cwd)
        _check_node(Path(task.cells_dir), token, version, where, task.cell_id)
        run_cell(task)
    finally:
        os.chdir(before)  # the worker process serves other tasks after this one
    return str(node)


def _check_node(cells_dir: Path, token: str, version: str, where: str, cell_id: str) -> None:
    """Refuse to run a cell on a node that runs another ppafl version or cannot see the sweep directory."""
    from sim.runner.rundir import ppafl_version

    mine = ppafl_version()
    if mine != version:
        raise SweepCellError(
            f"sweep cell {cell_id}: {where} runs ppafl {mine}, the sweep's driver ppafl {version}; "
            "install the same ppafl on every node"
        )
    try:
        seen = (cells_dir / _VISIBLE).read_text()
    except OSError:
        seen = None
    if seen != token:
        raise SweepCellError(
            f"sweep cell {cell_id}: {where} cannot see the sweep directory {cells_dir.parent} the driver writes to. "
            "With --backend ray the node that runs a cell writes its run directory straight into --out, so --out "
            "must be on storage every Ray node mounts at the same path (NFS or another shared file system)"
        )


def make_backend(name: str, jobs: int | None = None, address: str | None = None) -> Backend:
    """The backend called `name` ("local" or "ray"); `address` (a Ray cluster) only with "ray"."""
    if name == "local":
        if address is not None:
            raise ValueError(f"--address {address} names a Ray cluster; add --backend ray")
        return LocalBackend(jobs)
    if name == "ray":
        return RayBackend(address, jobs)
    raise ValueError(f"unknown backend {name!r}; known: {', '.join(BACKENDS)}")
