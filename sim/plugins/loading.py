"""Loading a user's plugins: a Python file or an importable module, named on the command line
(`--plugin FILE_OR_MODULE`) or in the Python API (`plugins=[...]`).

Loading runs the plugin's top level, whose `register_*` calls add its components. A file
is loaded under a module name derived from its path, so its classes pickle by reference.
`load_plugins` returns `PluginSource`s that carry a file's source text: a worker process
(a sweep cell, a process or Ray executor's trainer, on this machine or a cluster node) calls
`activate` with them before it unpickles anything, and loads the same code under the same
name, without needing the file. A module plugin is imported by name (it must be installed
wherever the run goes). The sources' digests identify the code a study's cells ran with.
"""

from __future__ import annotations

import hashlib
import importlib
import re
import sys
import types
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sim.plugins.registry import PluginError

__all__ = ["MAX_PLUGIN_BYTES", "PluginSource", "activate", "forget_plugins", "load_plugins", "loaded_plugins"]

MAX_PLUGIN_BYTES = 4 * 2**20  # a plugin file is code, not data: at most 4 MiB
_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_loaded: dict[str, PluginSource] = {}  # module name -> its source, in loading order


@dataclass(frozen=True)
class PluginSource:
    """One loaded plugin: what the user named (`spec`), the module it runs as, its code (files) and digest."""

    spec: str
    module: str
    digest: str  # sha256 of the file's source, or of the module's file ("" where it has none)
    code: str | None = None  # a file's source text; None for a module plugin (imported by name)

    def describe(self) -> dict[str, str]:
        """What a manifest records of it: the spec, the module and the digest."""
        return {"plugin": self.spec, "module": self.module, "sha256": self.digest}


def load_plugins(specs: Iterable[str]) -> tuple[PluginSource, ...]:
    """Load each plugin (a `.py` file path or a module name) in this process, in order; their sources.

    PluginError names a missing file, a module that does not import, or a plugin whose code
    fails, with the cause.
    """
    return tuple(_load(spec) for spec in specs)


def loaded_plugins() -> tuple[PluginSource, ...]:
    """Every plugin loaded in this process so far (to hand to worker processes)."""
    return tuple(_loaded.values())


def forget_plugins(keep: Iterable[PluginSource] = ()) -> None:
    """Forget the plugins loaded since `keep` (their modules too): they load anew when asked (tests)."""
    kept = {s.module for s in keep}
    for module in [m for m in _loaded if m not in kept]:
        del _loaded[module]
        sys.modules.pop(module, None)


def activate(sources: Iterable[PluginSource]) -> None:
    """Load plugins handed over from another process (idempotent: each module once per process)."""
    for source in sources:
        if source.module in _loaded:
            continue
        if source.code is None:
            _import(source.spec)
        else:
            _run_file(source.spec, source.module, source.code)
        _loaded[source.module] = source


def _load(spec: str) -> PluginSource:
    if not isinstance(spec, str) or not spec.strip():
        raise PluginError(f"--plugin {spec!r}: name a plugin file (path/to/plugins.py) or an importable module")
    spec = spec.strip()
    if spec.endswith(".py") or "/" in spec or Path(spec).is_file():
        return _load_file(spec)
    if not _MODULE_NAME.match(spec):
        raise PluginError(f"--plugin {spec!r}: neither a .py file nor a module name (like mypackage.plugins)")
    if spec in _loaded:
        return _loaded[spec]
    module = _import(spec)
    path = getattr(module, "__file__", None)
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest() if path and Path(path).is_file() else ""
    source = _loaded[spec] = PluginSource(spec, spec, digest)
    return source


def _load_file(spec: str) -> PluginSource:
    path = Path(spec).expanduser()
    try:
        if not path.is_file():
            raise PluginError(f"--plugin {spec}: no such file" + (" (a folder)" if path.is_dir() else ""))
        size = path.stat().st_size
        if size > MAX_PLUGIN_BYTES:
            raise PluginError(f"--plugin {spec}: {size / 2**20:.1f} MiB is more than a plugin file may hold "
                              f"({MAX_PLUGIN_BYTES // 2**20} MiB); keep data in files the plugin reads")
        code = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PluginError(f"--plugin {spec}: not a UTF-8 text file (byte {exc.start})") from None
    except OSError as exc:
        raise PluginError(f"--plugin {spec}: cannot read it ({exc.strerror})") from None
    resolved = path.resolve()
    stem = re.sub(r"\W", "_", resolved.stem)
    module = f"ppafl_plugin_{stem}_{hashlib.sha256(str(resolved).encode()).hexdigest()[:10]}"
    if module in _loaded:
        return _loaded[module]
    _run_file(str(path), module, code)
    source = _loaded[module] = PluginSource(str(path), module, hashlib.sha256(code.encode()).hexdigest(), code)
    return source


def _import(name: str) -> types.ModuleType:
    try:
        return importlib.import_module(name)
    except PluginError:
        raise
    except ModuleNotFoundError as exc:
        if exc.name is not None and name.startswith(exc.name):
            raise PluginError(f"--plugin {name}: no module of that name is installed here (and no such file); "
                              "give a path to a .py file, or install the package that holds it") from None
        raise PluginError(f"--plugin {name} failed to import: {exc}") from None
    except Exception as exc:  # noqa: BLE001  (the plugin's own error, named)
        raise PluginError(f"--plugin {name} failed while loading: {type(exc).__name__}: {exc}") from None


def _run_file(path: str, module_name: str, code: str) -> None:
    """Run a plugin file's code as module `module_name` (registered in sys.modules: its classes pickle)."""
    module = types.ModuleType(module_name)
    module.__file__ = path
    sys.modules[module_name] = module
    try:
        exec(compile(code, path, "exec"), module.__dict__)  # noqa: S102  (the user asked for this file to run)
    except PluginError:
        del sys.modules[module_name]
        raise
    except Exception as exc:  # noqa: BLE001  (the plugin's own error, named with its line)
        del sys.modules[module_name]
        line = _line_of(exc, path)
        raise PluginError(f"--plugin {path} failed while loading{line}: {type(exc).__name__}: {exc}") from None


def _line_of(exc: BaseException, path: str) -> str:
    tb, line = exc.__traceback__, None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == path:
            line = tb.tb_lineno
        tb = tb.tb_next
    if isinstance(exc, SyntaxError) and exc.filename == path:
        line = exc.lineno
    return f" (line {line})" if line else ""
