"""The client is a layer below the runtime, publishing and the CLI: it never imports them, nor torch.

Checked on the source (module level and inside functions alike), so a lazy import cannot hide an
upward edge; and only client/remote.py talks to huggingface_hub or its HTTP stack.
"""

from __future__ import annotations

import ast
from pathlib import Path

import adapterhub.client

CLIENT = Path(adapterhub.client.__file__).parent
FORBIDDEN = ("torch", "transformers", "peft", "adapterhub.runtime", "adapterhub.cli", "adapterhub.publish")
NETWORK = ("huggingface_hub", "httpx2", "httpx", "urllib.request", "http.client", "requests", "socket")


def _imports(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports, wherever the import statement is."""
    package = "adapterhub.client"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                name = f"{base}.{node.module}" if node.module else base
                found |= {name} | {f"{name}.{a.name}" for a in node.names}
            else:
                found.add(node.module or "")
    return found


def _hits(names: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if any(n == p or n.startswith(p + ".") for p in prefixes))


def test_client_imports_nothing_above_it():
    problems = {p.name: _hits(_imports(p), FORBIDDEN) for p in sorted(CLIENT.glob("*.py"))}
    assert {k: v for k, v in problems.items() if v} == {}


def test_only_remote_opens_connections():
    users = {p.name for p in CLIENT.glob("*.py") if _hits(_imports(p), NETWORK)}
    assert users == {"remote.py"}
