"""Uploads from worker processes, passed back through files instead of the pool's pipe.

A real-SHE update is ~100 bytes per parameter (172 MB for mnist_cnn); a process pool's pipe
moved only ~0.2 GB/s here, so a worker pickles a large upload into a file of a spool
directory in RAM (/dev/shm where there is one) and returns its path; the engine reads it
back and deletes it.
"""

from __future__ import annotations

import os
import pickle
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from fl.jobs import ClientUpload

__all__ = ["SPOOL_MIN_BYTES", "Spooled", "ship", "spool_directory", "unship"]

SPOOL_MIN_BYTES = 1 << 20  # uploads at least this large go back through a file, not the pipe
_SPOOL_PREFIX = "ppafl-spool-"  # then the pid of the run that made the directory


@dataclass(frozen=True)
class Spooled:
    """A worker's upload, pickled into a file of the executor's spool directory."""

    path: str


def spool_directory(parent: Path | None = None) -> str:
    """A fresh directory for uploads in flight, in RAM (/dev/shm) where there is one.

    Directories left by a run that was killed (its process is gone) are removed first: in
    /dev/shm they would hold memory until the machine restarts.
    """
    if parent is None:
        shm = Path("/dev/shm")
        parent = shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())
    for stale in parent.glob(f"{_SPOOL_PREFIX}*"):
        owner = stale.name[len(_SPOOL_PREFIX) :].split("-")[0]
        if owner.isdigit() and not _process_exists(int(owner)):
            shutil.rmtree(stale, ignore_errors=True)
    return tempfile.mkdtemp(prefix=f"{_SPOOL_PREFIX}{os.getpid()}-", dir=parent)  # mode 0700: ours alone


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        pass
    return True


def ship(upload: ClientUpload, spool: str) -> ClientUpload | Spooled:
    """What a worker returns for `upload`: the upload itself, or, from SPOOL_MIN_BYTES on, a
    `Spooled` file holding it. Where the file cannot be written (e.g. a full /dev/shm), the
    upload itself."""
    data = pickle.dumps(upload, protocol=pickle.HIGHEST_PROTOCOL)
    if len(data) < SPOOL_MIN_BYTES:
        return upload
    path = None
    try:
        fd, path = tempfile.mkstemp(dir=spool, suffix=".upload")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    except OSError:
        if path is not None:
            Path(path).unlink(missing_ok=True)
        return upload
    return Spooled(path)


def unship(result: ClientUpload | Spooled) -> ClientUpload:
    """The upload a worker returned, read back (and its file removed) if it was spooled."""
    if not isinstance(result, Spooled):
        return result
    path = Path(result.path)
    try:
        return pickle.loads(path.read_bytes())
    finally:
        path.unlink(missing_ok=True)
