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


def test_the_license_file_is_the_full_apache_2_text_pyproject_declares():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License\n                           Version 2.0, January 2004")
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    # all nine sections of the terms, and their end
    for number, title in enumerate(["Definitions", "Grant of Copyright License", "Grant of Patent License",
                                    "Redistribution", "Submission of Contributions", "Trademarks",
                                    "Disclaimer of Warranty", "Limitation of Liability",
                                    "Accepting Warranty or Additional Liability"], start=1):
        assert f"{number}. {title}." in text, title
    assert "END OF TERMS AND CONDITIONS" in text and len(text.splitlines()) >= 200


def test_shell_completion_is_clicks(tmp_path):
    """The README's completion line: click's bash script, which completes command names."""
    import os
    import subprocess
    import sys

    script = Path(sys.executable).with_name("adapterhub")
    env = {**os.environ, "_ADAPTERHUB_COMPLETE": "bash_source"}
    source = subprocess.run([str(script)], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert source.returncode == 0 and "complete -o nosort -F _adapterhub_completion adapterhub" in source.stdout
    env = {**os.environ, "_ADAPTERHUB_COMPLETE": "bash_complete", "COMP_WORDS": "adapterhub ins", "COMP_CWORD": "1"}
    words = subprocess.run([str(script)], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert words.stdout.split() == ["plain,install"]
    env.update(COMP_WORDS="adapterhub index ", COMP_CWORD="2")
    words = subprocess.run([str(script)], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert words.stdout.split() == ["plain,add", "plain,build", "plain,validate"]
