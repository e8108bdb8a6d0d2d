"""The layers hold: what ARCHITECTURE.md says imports what is what the code imports.

* ``lint-imports`` (import-linter, configured in pyproject.toml) checks the layers of the
  ``adapterhub`` package, imports inside functions included;
* plugins (the built-ins in ``plugins/``, installed as ``adapterhub.default_plugins``, and the
  example third-party plugin) import only ``adapterhub``, ``adapterhub.plugin``,
  ``adapterhub.toolkit`` and ``adapterhub.errors`` of adapterhub's modules, and never another
  plugin: import-linter cannot see them (they are installed from another folder), so this test
  reads their syntax trees.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ALLOWED = ("adapterhub", "adapterhub.plugin", "adapterhub.toolkit", "adapterhub.errors")
PLUGIN_FILES = sorted((ROOT / "plugins").rglob("*.py")) + sorted(
    (ROOT / "tests" / "example_plugin" / "adapterhub_example_scale").rglob("*.py"))


def _allowed(module: str) -> bool:
    return any(module == a or module.startswith(a + ".") for a in ALLOWED[1:]) or module == "adapterhub"


def _imports(path: Path) -> list[tuple[int, int, str]]:
    """(line, relative level, module) of every import in ``path``, function bodies included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, 0, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, node.level, node.module or ""))
    return found


@pytest.mark.parametrize("path", PLUGIN_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_plugins_import_only_the_public_plugin_api(path):
    in_builtin = (ROOT / "plugins") in path.parents
    depth = len(path.relative_to(ROOT / "plugins").parts) - 1 if in_builtin else 0  # 1 inside plugins/<m>/
    problems = []
    for line, level, module in _imports(path):
        if level == 0:
            if module.split(".")[0] == "adapterhub" and not _allowed(module):
                problems.append(f"line {line}: imports {module}")
        elif in_builtin and level > depth:
            problems.append(f"line {line}: a relative import ({'.' * level}{module}) reaches outside its plugin")
    assert not problems, f"{path.relative_to(ROOT)}: " + "; ".join(problems)


def test_the_check_sees_a_forbidden_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from adapterhub.runtime.model import AdapterModel\n")
    assert [m for _, _, m in _imports(bad) if not _allowed(m)] == ["adapterhub.runtime.model"]
    assert _allowed("adapterhub.toolkit.peft") and not _allowed("adapterhub.client")


def test_import_linter_contracts_are_kept():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe, "import-linter is part of the test extras"
    result = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout
