"""The packages' layering: every import (module level or inside a function) goes down
the layers or across one layer without a circle, never up.

Bottom-up:  errors, entry  ->  storage, faces  ->  records  ->  model  ->  reports
            ->  ingest, trainer, serving  ->  bench

ingest, trainer and serving are three commands beside each other: none imports another,
except trainer.predict / trainer.export (the `python -m trainer.predict` and
`python -m trainer.export` names of serving's commands).  A lower package's
`__main__.py` (`python -m records inspect`) is a command too: it stands in the
commands' layer, and nothing imports it."""

from __future__ import annotations

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYERS = (("errors", "entry"), ("storage", "faces"), ("records",), ("model",), ("reports",),
          ("ingest", "trainer", "serving"), ("bench",))
LEVEL = {package: level for level, packages in enumerate(LAYERS) for package in packages}
COMMANDS = {"ingest", "trainer", "serving"}
ALIASES = {"trainer/predict.py", "trainer/export.py"}    # may import serving


def _modules(path: str, package: str) -> set[str]:
    """The dotted names `path` imports, anywhere in it (relative imports resolve to its own package)."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = package if node.level else (node.module or "")
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _imports(path: str, package: str) -> set[str]:
    """The top-level project packages `path` imports."""
    return {name.split(".")[0] for name in _modules(path, package)} & set(LEVEL)


def _level(rel: str, package: str) -> int:
    """A file's layer: its package's, or the commands' for a lower package's __main__.py."""
    if os.path.basename(rel) == "__main__.py":
        return max(LEVEL[package], LEVEL["ingest"])
    return LEVEL[package]


def package_imports() -> dict[str, dict[str, set[str]]]:
    """{package: {file (relative to the repository): the other project packages it imports}}."""
    edges: dict[str, dict[str, set[str]]] = {}
    for package in LEVEL:
        for folder, _, files in os.walk(os.path.join(ROOT, package)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    rel = os.path.relpath(path, ROOT)
                    edges.setdefault(package, {})[rel] = _imports(path, package) - {package}
    return edges


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of imports between packages, or None."""
    state: dict[str, int] = {}

    def visit(node, trail):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return trail[trail.index(nxt):] + [nxt] if nxt in trail else [node, nxt]
            if nxt not in state:
                found = visit(nxt, trail + [nxt])
                if found:
                    return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return None


def test_every_package_is_in_a_layer():
    packages = {name for name in os.listdir(ROOT)
                if os.path.isfile(os.path.join(ROOT, name, "__init__.py"))} - {"tests"}
    assert packages == set(LEVEL)


def test_no_import_goes_up_a_layer():
    upward = sorted(f"{rel} imports {other} (layer {LEVEL[other]} above {package}'s {_level(rel, package)})"
                    for package, files in package_imports().items()
                    for rel, others in files.items() for other in others
                    if LEVEL[other] > _level(rel, package))
    assert upward == []


def test_no_module_imports_a_command_main():
    mains = sorted(f"{os.path.relpath(os.path.join(folder, name), ROOT)} imports {module}"
                   for package in LEVEL for folder, _, files in os.walk(os.path.join(ROOT, package))
                   for name in files if name.endswith(".py")
                   for module in _modules(os.path.join(folder, name), package)
                   if module.split(".")[0] in LEVEL and module.endswith(".__main__"))
    assert mains == []


def test_the_commands_do_not_import_each_other():
    across = sorted(f"{rel} imports {other}"
                    for package, files in package_imports().items() if package in COMMANDS
                    for rel, others in files.items() for other in others & COMMANDS
                    if rel.replace(os.sep, "/") not in ALIASES)
    assert across == []


def test_no_import_cycle_between_packages():
    graph = {package: set().union(set(), *(others for rel, others in files.items()
                                           if os.path.basename(rel) != "__main__.py"))
             for package, files in package_imports().items()}   # nothing imports a __main__
    assert _cycle(graph) is None


def test_the_checks_catch_an_upward_import_and_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
    assert LEVEL["records"] < LEVEL["model"] < LEVEL["reports"] < LEVEL["trainer"] < LEVEL["bench"]
