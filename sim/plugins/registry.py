"""One registry per kind of plugin: names to components, and the error a scenario gets for an unknown name.

Built-in components register the same way a user's do. Installed packages add theirs
through the entry-point group `ppafl.plugins`: each entry point names a module (imported:
its top-level `register_*` calls run) or a function (called with no arguments). Entry
points are loaded once per process, the first time any registry is asked for a name.
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Generic, TypeVar

from sim.errors import PpaflError

__all__ = ["ENTRY_POINT_GROUP", "PluginError", "Registry", "load_entry_points"]

T = TypeVar("T")
ENTRY_POINT_GROUP = "ppafl.plugins"
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
HOW_TO_REGISTER = (
    "register one with sim.plugins.register_{kind}(...) in a plugin file and pass it with --plugin FILE "
    "(Python: plugins=[...]), or install a package with a '" + ENTRY_POINT_GROUP + "' entry point; "
    "see docs/extending.md"
)
_entry_points_loaded = False


class PluginError(PpaflError):
    """A plugin cannot be loaded or registered, or a scenario names one that is not registered."""


def load_entry_points() -> None:
    """Load the installed packages' plugins (entry-point group `ppafl.plugins`), once per process."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = ep.load()
            if callable(loaded):
                loaded()
        except PluginError:
            raise
        except Exception as exc:  # noqa: BLE001  (a broken installed plugin is named, not a traceback)
            where = f"{ep.dist.name} " if ep.dist is not None else ""
            raise PluginError(
                f"the installed plugin {where}(entry point {ep.name} = {ep.value} in group {ENTRY_POINT_GROUP}) "
                f"failed to load: {type(exc).__name__}: {exc}; fix or uninstall it"
            ) from None


def _origin(entry: object) -> object:
    """Where an entry comes from: a class's or factory's module and name, else the entry's value."""
    for attribute in ("factory", "loader"):
        entry = getattr(entry, attribute, entry)
    module, name = getattr(entry, "__module__", None), getattr(entry, "__qualname__", None)
    return f"{module}.{name}" if isinstance(module, str) and isinstance(name, str) else repr(entry)


class Registry(Generic[T]):
    """Names of one kind of component (a strategy's settings class, a model, a data set, ...).

    `kind` names the kind in messages ("strategy"), `field` where a scenario names one
    ("strategy.name"). `table`, `add` and `remove` keep the entries somewhere else than the
    registry itself (e.g. the device classes of `devices.profiles`); by default it keeps its own.
    """

    def __init__(
        self,
        kind: str,
        field: str,
        table: Mapping[str, T] | None = None,
        add: Callable[[str, T], None] | None = None,
        remove: Callable[[str], object] | None = None,
    ) -> None:
        own: dict[str, T] = {}
        self.kind, self.field = kind, field
        self._table: Mapping[str, T] = own if table is None else table
        self._add: Callable[[str, T], None] = add if add is not None else own.__setitem__
        self._remove: Callable[[str], object] = remove if remove is not None else own.pop

    def register(self, name: str, entry: T) -> T:
        """Add `entry` under `name`; PluginError if the name is malformed or taken by another entry."""
        if not isinstance(name, str) or not _NAME.match(name):
            raise PluginError(
                f"{self.kind} name {name!r} is not a plain name: use letters, digits, '_', '.' or '-' "
                "(at most 64, starting with a letter)"
            )
        old = self._table.get(name)
        if old is not None and _origin(old) != _origin(entry):
            raise PluginError(f"{self.kind} {name!r} is registered already (by {_origin(old)}); choose another name")
        self._add(name, entry)  # the same component again (a notebook cell run twice): the newer one
        return entry

    def unregister(self, name: str) -> None:
        """Remove `name` (tests and notebooks that register something for a while)."""
        self._remove(name)

    def snapshot(self) -> dict[str, T]:
        """The entries now (for `restore`)."""
        return dict(self._table)

    def restore(self, snapshot: dict[str, T]) -> None:
        """Put the entries back as they were at `snapshot`."""
        for name in [n for n in self._table if n not in snapshot]:
            self._remove(name)
        for name, entry in snapshot.items():
            if self._table.get(name) is not entry:
                self._add(name, entry)

    def get(self, name: str) -> T:
        """The entry of `name`; PluginError listing the known names and how to register one."""
        load_entry_points()
        entry = self._table.get(name) if isinstance(name, str) else None
        if entry is None:
            raise PluginError(self.unknown(name))
        return entry

    def unknown(self, name: object) -> str:
        """The message for an unknown name: the known ones, the nearest, how to register a new one."""
        import difflib

        known = self.names()
        close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return (f"unknown {self.kind} {name!r} ({self.field}){hint}; known: {', '.join(map(repr, known))}; "
                + HOW_TO_REGISTER.format(kind=self.kind.replace(" ", "_")))

    def names(self) -> list[str]:
        load_entry_points()
        return list(self._table)

    def __contains__(self, name: object) -> bool:
        load_entry_points()
        return isinstance(name, str) and name in self._table

    def items(self) -> Iterator[tuple[str, T]]:
        load_entry_points()
        return iter(list(self._table.items()))
