"""The layers import one way, and no module imports another that imports it back (at import time).

Every import of every module of the four packages is read from its source (module level,
inside functions and under TYPE_CHECKING alike) and checked against the allowed directions.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("crypto", "devices", "fl", "sim")

# What each package may import of the others.
PACKAGE_RULES = {"crypto": set(), "devices": set(), "fl": {"crypto"}, "sim": {"crypto", "devices", "fl"}}
# What each layer of `sim` may import of the other layers (its own modules always).
SIM_RULES = {
    "sim.errors": set(),
    "sim.files": set(),
    "sim.plots": {"sim.errors", "sim.files"},
    "sim.plugins": {"sim.errors"},
    "sim.scenario": {"sim.plugins", "sim.errors"},
    "sim.engine": {"sim.errors", "sim.files", "sim.plots"},
    "sim.assembly": {"sim.scenario", "sim.engine", "sim.plugins", "sim.errors"},
    "sim.testing": {"sim.engine", "sim.plugins", "sim.errors"},
    "sim.runner": {"sim.assembly", "sim.engine", "sim.scenario", "sim.plugins", "sim.errors", "sim.files", "sim.plots"},
    "sim.studies": {"sim.runner", "sim.scenario", "sim.plugins", "sim.errors", "sim.files", "sim.plots"},
    "sim.cli": {"sim.studies", "sim.runner", "sim.assembly", "sim.engine", "sim.scenario", "sim.plugins", "sim.errors",
                "sim.files", "sim.plots"},
}
# The one import against the layers: `Simulation.from_scenario`, the one-liner that builds a run from a scenario,
# asks the assembly at call time (the engine itself knows no scenario).
ALLOWED_UPWARD = {("sim.engine.simulation", "sim.assembly")}


def _find_modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def _imports(path: Path, module: str) -> list[tuple[str, bool]]:
    """(imported project module, at import time?) for every import in a file."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = top and not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if isinstance(child, ast.Import):
                found.extend((a.name, top) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - child.level + 1] + [base]).strip(".")
                submodules = [f"{base}.{a.name}" for a in child.names if f"{base}.{a.name}" in MODULES]
                found.extend((m, top) for m in submodules)
                if len(submodules) < len(child.names):  # names defined by the module itself
                    found.append((base, top))
            visit(child, inner)

    visit(tree, True)
    return [(name, top) for name, top in found if name.split(".")[0] in PACKAGES]


MODULES = _find_modules()


def _modules() -> dict[str, Path]:
    return MODULES


def _layer(module: str) -> str:
    if not module.startswith("sim.") and module != "sim":
        return module.split(".")[0]
    return ".".join(module.split(".")[:2])


def test_layers_import_only_downward():
    modules = _modules()
    bad = []
    for module, path in modules.items():
        pkg, layer = module.split(".")[0], _layer(module)
        for target, _top in _imports(path, module):
            if target not in modules:
                continue  # `from pkg import name`: the name itself is not a module
            other = target.split(".")[0]
            if other != pkg:
                if other not in PACKAGE_RULES[pkg]:
                    bad.append(f"{module} imports {target} ({pkg} may import {sorted(PACKAGE_RULES[pkg]) or 'nothing'})")
                continue
            if pkg != "sim" or module == "sim":
                continue
            to = _layer(target)
            if to != layer and to not in SIM_RULES[layer] and (module, to) not in ALLOWED_UPWARD:
                bad.append(f"{module} imports {target}: layer {layer} may import {sorted(SIM_RULES[layer])}")
    assert not bad, "\n".join(bad)


def test_every_sim_module_belongs_to_a_layer():
    unplaced = [m for m in _modules() if m.startswith("sim.") and _layer(m) not in SIM_RULES]
    assert not unplaced, f"modules outside the layers of SIM_RULES: {unplaced}"


def test_no_import_cycle_at_import_time():
    modules = _modules()
    graph = {m: {t for t, top in _imports(p, m) if top and t in modules and t != m} for m, p in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def strong(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            strong(v)
    assert not cycles, f"import cycles: {cycles}"
