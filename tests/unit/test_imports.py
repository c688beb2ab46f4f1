"""The house's import rules (docs/ARCHITECTURE.md, "Where the code lives"), read from the code's own
imports with the stdlib ``ast``: no import circle anywhere in src/ or functions/, the front door imported
by nothing, the operator's commands and the embedded AWS never importing each other, the floor they
share importing neither, and the Lambda code never importing the command line."""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CODE_ROOTS = (REPO / "src", REPO / "functions")
FRONT_DOOR = "batchpipe.cli"
ROOMS = ("batchpipe.ops", "batchpipe.local")
SHARED_FLOOR = (
    "batchpipe.inputs",
    "batchpipe.outcome",
    "batchpipe.output",
    "batchpipe.progress",
    "batchpipe.spec_schema",
)


def _modules() -> dict[str, tuple[Path, bool]]:
    """Every module of the code roots by dotted name, with its file and whether it is a package."""
    found = {}
    for root in CODE_ROOTS:
        for path in sorted(root.rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            package = parts[-1] == "__init__"
            found[".".join(parts[:-1] if package else parts)] = (path, package)
    return found


MODULES = _modules()


def _first_party(name: str) -> str | None:
    """The module of the code roots that ``name`` (a module, or a name inside one) resolves to."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imported(module: str) -> set[str]:
    """The first-party modules ``module`` imports anywhere in its file (deferred imports included)."""
    path, package = MODULES[module]
    here = module if package else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(_first_party(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = here.split(".")[: len(here.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            for alias in node.names:
                # `from package import module` imports the module; `from module import name`, the module.
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else _first_party(base))
    return {name for name in found if name and name != module}


GRAPH = {module: _imported(module) for module in MODULES}


def _reachable(graph: Mapping[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = list(graph.get(start, ()))
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(graph.get(name, ()))
    return seen


def circles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Each group of modules that import each other, directly or around a loop."""
    reach = {name: _reachable(graph, name) for name in graph}
    groups = {
        frozenset({name} | {other for other in reach[name] if name in reach[other]})
        for name in graph
        if name in reach[name]
    }
    return sorted(sorted(group) for group in groups)


def _importers(target: str) -> Iterator[tuple[str, str]]:
    for module, imported in GRAPH.items():
        for name in imported:
            if name == target or name.startswith(target + "."):
                yield module, name


def _inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_reader_finds_a_circle_and_only_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []
    # It reads this project: the front door imports both rooms' parsers.
    assert {"batchpipe.local.parsers", "batchpipe.ops.parsers"} <= GRAPH[FRONT_DOOR]
    assert set().union(*GRAPH.values()) <= set(MODULES)  # only the project's own modules


def test_no_import_circle_anywhere():
    assert circles(GRAPH) == []


def test_the_front_door_is_imported_by_nothing():
    assert list(_importers(FRONT_DOOR)) == []


@pytest.mark.parametrize(("room", "other"), [ROOMS, ROOMS[::-1]])
def test_the_operators_commands_and_the_embedded_aws_never_import_each_other(room, other):
    assert [(m, n) for m, n in _importers(other) if _inside(m, room)] == []


@pytest.mark.parametrize("module", SHARED_FLOOR)
def test_the_shared_floor_imports_no_room(module):
    assert {name for name in GRAPH[module] if name.startswith("batchpipe.")} == set()


def test_the_lambda_code_never_imports_the_command_line():
    lambda_code = [m for m in GRAPH if not _inside(m, "batchpipe")]
    assert [(m, n) for m in lambda_code for n in GRAPH[m] if _inside(n, "batchpipe")] == []


def test_a_handler_imports_only_the_domain_code():
    handlers = [m for m in GRAPH if not _inside(m, "batchpipe") and not _inside(m, "batchpipe_core")]
    assert handlers, "no handler found under functions/"
    assert [(m, n) for m in handlers for n in GRAPH[m] if not _inside(n, "batchpipe_core")] == []
