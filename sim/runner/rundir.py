"""The run directory's manifest and lock: what ran, with what, and whether it finished.

`manifest.json` is written (atomically) when a run starts, with status `running`, and
rewritten when it ends: `finished`, `failed` (with the error) or `interrupted`. Only a
`finished` manifest marks a complete run; anything else is resumed by starting the same
command again (same scenario and seed), which `open_run` checks. A lock file held for
the whole run keeps two processes from writing to one directory; the kernel releases it
when the process dies, however it dies.
"""

from __future__ import annotations

import configparser
import fcntl
import importlib.metadata
import json
import os
import platform
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sim.files import atomic_write
from sim.scenario import Scenario

__all__ = [
    "CACHE_DIR",
    "MANIFEST_NAME",
    "STATUSES",
    "RunDir",
    "RunDirError",
    "differences",
    "open_run",
    "ppafl_version",
    "read_manifest",
]

MANIFEST_NAME = "manifest.json"
CACHE_DIR = "cache"
STATUSES = ("running", "finished", "failed", "interrupted")
_LOCK_NAME = ".lock"


class RunDirError(FileExistsError):
    """The output directory cannot take this run; the message says why and what to do."""


def ppafl_version() -> str:
    """The installed package's version, or setup.cfg's when running from a checkout."""
    try:
        return importlib.metadata.version("ppafl")
    except importlib.metadata.PackageNotFoundError:
        cfg = configparser.ConfigParser()
        cfg.read(Path(__file__).resolve().parents[2] / "setup.cfg")
        return cfg.get("metadata", "version", fallback="unknown")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write(path, lambda p: p.write_text(json.dumps(data, indent=2) + "\n"))


def read_manifest(directory: str | Path) -> dict[str, Any] | None:
    """The manifest of a run directory, None if it has none; RunDirError if it is unreadable."""
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunDirError(
            f"{path} is unreadable ({exc}); pass --overwrite to start the run over, or choose another --out"
        ) from None
    if not isinstance(data, dict) or data.get("status") not in STATUSES:
        raise RunDirError(
            f"{path} is not a ppafl run manifest (no valid status); pass --overwrite or choose another --out"
        )
    return data


def differences(old: Any, new: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted field, old value, new value) for every field where two scenario dicts differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[tuple[str, Any, Any]] = []
        for k in sorted(set(old) | set(new)):
            out += differences(old.get(k), new.get(k), f"{path}.{k}" if path else str(k))
        return out
    return [] if old == new else [(path or "(scenario)", old, new)]


@dataclass
class RunDir:
    """An open run directory: holds the lock and updates the manifest."""

    path: Path
    manifest: dict[str, Any]
    _lock_fd: int | None = None

    @property
    def resumed(self) -> bool:
        """True when an earlier attempt of this run exists (it is resumed, not started)."""
        return int(self.manifest["attempts"]) > 1

    @property
    def cache_dir(self) -> Path:
        return self.path / CACHE_DIR

    def mark(self, status: str, error: str | None = None, **info: Any) -> None:
        """Record the run's status (and, for failures, the error) in the manifest."""
        if status not in STATUSES:
            raise ValueError(f"unknown run status {status!r}; use one of {', '.join(STATUSES)}")
        self.manifest.update(status=status, error=error, updated_at=_now(), **info)
        if status == "finished":
            self.manifest["finished_at"] = self.manifest["updated_at"]
        _write_json(self.path / MANIFEST_NAME, self.manifest)

    def discard(self, remove_folder: bool) -> None:
        """Remove what this run put in the directory (manifest, cache, lock), and the directory itself
        if `remove_folder` and nothing else is in it: for a run that left nothing worth resuming."""
        (self.path / MANIFEST_NAME).unlink(missing_ok=True)
        shutil.rmtree(self.cache_dir, ignore_errors=True)
        (self.path / _LOCK_NAME).unlink(missing_ok=True)  # the lock is still held through its open descriptor
        if remove_folder:
            try:
                self.path.rmdir()
            except OSError:
                pass  # not empty: the user's own files stay

    def close(self) -> None:
        """Release the directory's lock."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def _lock(directory: Path) -> int:
    fd = os.open(directory / _LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise RunDirError(
            f"another ppafl run (pid {holder}) is writing to {directory}; wait for it to end or choose another --out"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def _clear(directory: Path, outputs: Iterable[str]) -> None:
    for name in [*outputs, MANIFEST_NAME]:
        (directory / name).unlink(missing_ok=True)
    shutil.rmtree(directory / CACHE_DIR, ignore_errors=True)


def _remove_stale_temps(directory: Path, outputs: Iterable[str]) -> None:
    for name in [*outputs, MANIFEST_NAME]:
        for tmp in directory.glob(f".{name}.*"):  # atomic_write's temporaries, left by a kill
            tmp.unlink(missing_ok=True)


def _check_resumable(
    directory: Path, old: dict[str, Any], scenario: Scenario, version: str, plugins: list[dict[str, str]] | None = None
) -> None:
    diffs = [f"{f}: {a!r} -> {b!r}" for f, a, b in differences(old.get("scenario"), scenario.to_dict())]
    if diffs:
        shown = "; ".join(diffs[:3]) + (f"; and {len(diffs) - 3} more" if len(diffs) > 3 else "")
        raise RunDirError(
            f"{directory} holds an unfinished ({old['status']}) run of another scenario ({shown}). "
            "Run the same scenario and seed to resume it, pass --overwrite to start over, or choose another --out"
        )
    if old.get("ppafl_version") != version:
        raise RunDirError(
            f"{directory} holds an unfinished run started by ppafl {old.get('ppafl_version')}, this is {version}; "
            "its cached results may differ: pass --overwrite to start over, or choose another --out"
        )
    if plugins is not None and (old.get("plugins") or []) != plugins:
        before = ", ".join(f"{p['plugin']} ({p['sha256'][:12]})" for p in old.get("plugins") or []) or "none"
        raise RunDirError(
            f"{directory} holds an unfinished run made with other plugin code (then: {before}); its cached results "
            "may differ: load the same plugins to resume it, pass --overwrite to start over, or choose another --out"
        )


def open_run(
    directory: str | Path,
    scenario: Scenario,
    outputs: Iterable[str],
    command: list[str] | None = None,
    overwrite: bool = False,
    plugins: list[dict[str, str]] | None = None,
) -> RunDir:
    """Lock `directory` and start (or resume) a run of `scenario` there.

    A finished run is refused unless `overwrite`; an unfinished one of the same scenario (and
    the same `plugins`' code: their `PluginSource.describe()`) is resumed; one of another
    scenario is refused. `overwrite` deletes the previous run's
    outputs, manifest and cache (nothing else in the directory).
    """
    path = Path(directory)
    if path.exists() and not path.is_dir():
        raise RunDirError(f"--out {path} is a file, not a directory; choose another --out")
    path.mkdir(parents=True, exist_ok=True)
    outputs = list(outputs)
    fd = _lock(path)
    try:
        version = ppafl_version()
        old = None if overwrite else read_manifest(path)
        if overwrite:
            _clear(path, outputs)
        elif old is None and (path / "summary.json").exists():
            raise RunDirError(f"{path} already holds a finished run; pass --overwrite or choose another --out")
        elif old is not None and old["status"] == "finished":
            raise RunDirError(
                f"{path} already holds a finished run of {old.get('scenario_name')!r} "
                f"(finished {old.get('finished_at')}); pass --overwrite to replace it, or choose another --out"
            )
        elif old is not None:
            _check_resumable(path, old, scenario, version, plugins or [])
        _remove_stale_temps(path, outputs)
        manifest = {
            "status": "running",
            "scenario_name": scenario.name,
            "seed": scenario.seed,
            "ppafl_version": version,
            "python": platform.python_version(),
            "command": command,
            "started_at": old["started_at"] if old is not None else _now(),
            "attempts": int(old.get("attempts", 1)) + 1 if old is not None else 1,
            "updated_at": _now(),
            "finished_at": None,
            "error": None,
            "scenario": scenario.to_dict(),
            **({"plugins": plugins} if plugins else {}),
        }
        run = RunDir(path, manifest, fd)
        run.mark("running")
        return run
    except BaseException:
        os.close(fd)
        raise
