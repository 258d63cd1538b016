"""The packages' layering: every import (module level or inside a function) goes down
the layers or across one layer without a circle, never up.

Bottom-up:  errors, entry  ->  storage, faces  ->  records  ->  model  ->  reports
            ->  ingest, trainer, serving  ->  bench

ingest, trainer and serving are three commands beside each other: none imports another,
except trainer.predict / trainer.export (the `python -m trainer.predict` and
`python -m trainer.export` names of serving's commands)."""

from __future__ import annotations

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYERS = (("errors", "entry"), ("storage", "faces"), ("records",), ("model",), ("reports",),
          ("ingest", "trainer", "serving"), ("bench",))
LEVEL = {package: level for level, packages in enumerate(LAYERS) for package in packages}
COMMANDS = {"ingest", "trainer", "serving"}
ALIASES = {"trainer/predict.py", "trainer/export.py"}    # may import serving


def _imports(path: str, package: str) -> set[str]:
    """The top-level project packages `path` imports (relative imports resolve to its own)."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.add(package if node.level else (node.module or "").split(".")[0])
    return found & set(LEVEL)


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
    upward = sorted(f"{rel} imports {other} (layer {LEVEL[other]} above {package}'s {LEVEL[package]})"
                    for package, files in package_imports().items()
                    for rel, others in files.items() for other in others
                    if LEVEL[other] > LEVEL[package])
    assert upward == []


def test_the_commands_do_not_import_each_other():
    across = sorted(f"{rel} imports {other}"
                    for package, files in package_imports().items() if package in COMMANDS
                    for rel, others in files.items() for other in others & COMMANDS
                    if rel.replace(os.sep, "/") not in ALIASES)
    assert across == []


def test_no_import_cycle_between_packages():
    graph = {package: set().union(*files.values()) if files else set()
             for package, files in package_imports().items()}
    assert _cycle(graph) is None


def test_the_checks_catch_an_upward_import_and_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
    assert LEVEL["records"] < LEVEL["model"] < LEVEL["reports"] < LEVEL["trainer"] < LEVEL["bench"]
