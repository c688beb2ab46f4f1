"""The package declares what the `batchpipe` command needs, and the tested pins satisfy it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]


def _pins(*files: str) -> dict[str, str]:
    pins = {}
    for name in files:
        for line in (REPO / name).read_text().splitlines():
            found = re.match(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^\s#]+)", line)
            if found:
                pins[_canonical(found[1])] = found[2]
    return pins


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_dependency_is_pinned_and_the_pin_satisfies_it():
    declared = [
        Requirement(r)
        for r in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    ]
    pins = _pins("requirements/constraints.txt")

    assert declared
    for requirement in declared:
        pin = pins.get(_canonical(requirement.name))
        assert pin, f"{requirement.name} is not in requirements/constraints.txt"
        assert requirement.specifier.contains(pin), f"{requirement} does not admit the tested {pin}"


def test_the_runtime_requirements_are_all_declared():
    """What the functions and the embedded AWS import at run time (not the test tools)."""
    runtime = set(_pins("functions/requirements.txt")) | {
        _canonical(n) for n in ("moto", "duckdb", "pyarrow", "PyYAML")
    }
    declared = {
        _canonical(Requirement(r).name)
        for r in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    }

    assert runtime <= declared
