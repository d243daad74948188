"""The package's layers, read from the source with ``ast``: imports only go downwards, no circles.

Layers, bottom to top: ``core`` < ``models``, ``losses``, ``data`` < ``zoo`` < ``training``,
``inference`` < ``experiments`` < ``apps``. ``training`` and ``inference`` never import each other
(a stylize-only user needs none of the training code), ``inference`` never needs the VGG loss, and
nothing imports ``apps``. Function-level imports of instyle modules are reserved for CLI start-up
and optional extras, so a circle cannot hide inside a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "instyle"

ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "models": {"core"},
    "losses": {"core"},
    "data": {"core"},
    "zoo": {"core", "models"},
    "training": {"core", "models", "losses", "data", "zoo"},
    "inference": {"core", "models", "data", "zoo"},
    "experiments": {"core", "models", "losses", "data", "zoo", "training", "inference"},
    "apps": {"core", "models", "losses", "data", "zoo", "training", "inference", "experiments"},
    # instyle/__init__.py (the lazy ``Stylizer``) and __main__.py (the command).
    "root": {"core", "inference", "apps"},
}
# Modules whose function-level imports of instyle are deliberate: the CLI imports each command's
# module when that command runs (start-up stays fast), the server package imports its FastAPI app
# only when served (an optional extra), and the package root's lazy ``Stylizer``.
LAZY_IMPORTERS = {"instyle.apps.cli", "instyle.apps.serve", "instyle", "instyle.inference.backends"}


def module_name(path: Path) -> str:
    parts = ("instyle", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ALLOWED else "root"


def imports(path: Path, modules: set[str]) -> list[tuple[str, bool, int]]:
    """(imported instyle module, inside a function?, line) for every import statement in the file."""
    tree = ast.parse(path.read_text(), str(path))
    nested: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            nested.update(id(n) for n in ast.walk(node) if n is not node)
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # ``from instyle.data import images`` imports the submodule when there is one.
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                     for a in node.names]
        for name in names:
            if name == "instyle" or name.startswith("instyle."):
                found.append((name, id(node) in nested, node.lineno))
    return found


def graph() -> dict[str, set[str]]:
    mods = all_modules()
    return {m: {t for t, _, _ in imports(p, set(mods)) if t != m} for m, p in mods.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_every_module_sits_in_a_layer_folder():
    loose = [m for m in all_modules() if layer(m) == "root" and m not in ("instyle", "instyle.__main__")]
    assert not loose, f"modules outside the layer folders: {loose}"


def test_imports_only_go_downwards():
    mods = all_modules()
    bad = []
    for mod, path in mods.items():
        for target, _, line in imports(path, set(mods)):
            src, dst = layer(mod), layer(target)
            if dst != src and dst not in ALLOWED[src]:
                bad.append(f"{path.relative_to(PACKAGE)}:{line}: {src} imports {dst} ({target})")
    assert not bad, "\n".join(bad)


def test_function_level_imports_only_for_start_up_and_extras():
    mods = all_modules()
    bad = [f"{path.relative_to(PACKAGE)}:{line}: {target}" for mod, path in mods.items()
           if mod not in LAZY_IMPORTERS for target, nested, line in imports(path, set(mods)) if nested]
    assert not bad, "function-level imports hide the dependency graph:\n" + "\n".join(bad)


def test_no_import_circles():
    cycle = find_cycle(graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("edges, has_cycle", [
    ({"a": {"b"}, "b": {"c"}, "c": set()}, False),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, True),
    ({"a": {"a"}}, True),
    ({"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set()}, False),
])
def test_cycle_finder(edges, has_cycle):
    """The checker itself: a circle like train -> demo -> train is found, a diamond is not one."""
    assert (find_cycle(edges) is not None) == has_cycle


def test_the_checker_sees_a_circle_added_back(tmp_path):
    """The old ``stylize -> fast -> export -> stylize`` circle, rebuilt in a copy of the real graph."""
    edges = graph()
    assert "instyle.inference.backends" in edges["instyle.inference.stylizer"]
    edges["instyle.inference.export"] = {*edges["instyle.inference.export"], "instyle.inference.stylizer"}
    assert "instyle.inference.export" in edges["instyle.inference.backends"]
    cycle = find_cycle(edges)
    assert cycle is not None and "instyle.inference.stylizer" in cycle
