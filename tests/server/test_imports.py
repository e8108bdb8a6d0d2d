"""The server package stands alone: it imports nothing from adapterhub but ``adapterhub.errors`` and
``adapterhub.fileio`` (and its own modules, without cycles), and never torch, transformers, peft or
the client, runtime or CLI, not even lazily inside a function."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import adapterhub.server

PACKAGE = Path(adapterhub.server.__file__).parent
ALLOWED = {"adapterhub.errors", "adapterhub.fileio"}
FORBIDDEN_TOP = {"torch", "transformers", "peft", "safetensors", "bitsandbytes"}


def _imports(path: Path) -> set[str]:
    """Absolute names of every module imported anywhere in ``path`` (top level or in a function)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = "adapterhub.server" if node.level == 1 else "adapterhub"
                module = f"{base}.{node.module}" if node.module else base
                if node.level == 1 and not node.module:  # from . import read_api
                    found.update(f"{base}.{alias.name}" for alias in node.names)
                    continue
                found.add(module)
            else:
                found.add(node.module or "")
    return found


def _graph() -> dict[str, set[str]]:
    return {f"adapterhub.server.{p.stem}": _imports(p) for p in sorted(PACKAGE.glob("*.py"))}


def test_only_errors_and_fileio_from_the_rest_of_adapterhub():
    for module, imports in _graph().items():
        outside = {
            name for name in imports
            if name.split(".")[0] == "adapterhub" and not name.startswith("adapterhub.server")
        }
        assert outside <= ALLOWED, f"{module} imports {sorted(outside - ALLOWED)}"
        heavy = {name for name in imports if name.split(".")[0] in FORBIDDEN_TOP}
        assert not heavy, f"{module} imports {sorted(heavy)}"


def test_no_import_cycle_inside_the_package():
    graph = {m: {i.removesuffix(".__init__") for i in deps if i.startswith("adapterhub.server.")} for m, deps in
             _graph().items()}
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in sorted(graph.get(module, ())):
            assert state.get(dep) != 1, f"import cycle: {' -> '.join(path + [dep])}"
            if dep not in state:
                visit(dep, path + [dep])
        state[module] = 2

    for module in graph:
        if module not in state:
            visit(module, [module])


def test_starting_the_app_loads_no_client_runtime_or_ml_stack(tmp_path):
    code = (
        "import sys\n"
        "from adapterhub.server.app import create_app\n"
        "from adapterhub.server.testing import running_hub\n"
        f"create_app({str(tmp_path)!r}).test_client().get('/api/models')\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'transformers', 'peft'}\n"
        "             or m.startswith(('adapterhub.client', 'adapterhub.runtime', 'adapterhub.cli')))\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
