"""What pyproject.toml declares is what CI tests: every lower bound is pinned in .ci/lower-bounds.txt."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent


def _declared() -> dict[str, Version]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in ("test", "qlora"):
        reqs += project["optional-dependencies"][extra]
    floors = {}
    for text in reqs:
        req = Requirement(text)
        for spec in req.specifier:
            if spec.operator == ">=":
                floors[canonicalize_name(req.name)] = Version(spec.version)
    return floors


def _pinned() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / ".ci" / "lower-bounds.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = re.split(r"==", line)
            pins[canonicalize_name(name)] = Version(version)
    return pins


def test_every_declared_lower_bound_is_pinned_for_ci():
    declared, pinned = _declared(), _pinned()
    assert declared, "pyproject.toml declares no lower bounds"
    missing = sorted(set(declared) - set(pinned))
    assert not missing, f".ci/lower-bounds.txt lacks {missing}"
    differ = {n: (str(declared[n]), str(pinned[n])) for n in declared if declared[n] != pinned[n]}
    assert not differ, f"declared floor vs pinned (name: (pyproject, lower-bounds)): {differ}"
    extra = sorted(set(pinned) - set(declared))
    assert not extra, f".ci/lower-bounds.txt pins packages pyproject.toml does not bound: {extra}"


def test_ci_runs_the_lower_bounds_and_the_previous_release():
    ci = (ROOT / ".ci" / "run").read_text()
    assert ".ci/compat --lower-bounds" in ci
    assert ".ci/compat --previous" in ci


def test_every_python_package_ships_in_the_wheel():
    """A subpackage missing from [tool.setuptools] packages works in an editable install but is
    absent from the wheel; every folder with an __init__.py must be listed."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    found = set()
    for top, name in (("adapterhub", "adapterhub"), ("plugins", "adapterhub.default_plugins")):
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top).parts
            found.add(".".join((name, *rel)))
    assert found - listed == set(), f"packages missing from pyproject.toml: {sorted(found - listed)}"
    assert all(p.startswith("adapterhub") for p in listed)
