"""Plugin modules written to disk (the fresh plugin manager fixture is in tests/conftest.py)."""

from __future__ import annotations

import sys

import pytest


@pytest.fixture
def fake_module(tmp_path, monkeypatch):
    """Write a plugin module to disk so that importing it (ep.load()) runs its body."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(name, body):
        (tmp_path / f"{name}.py").write_text(body)
        monkeypatch.delitem(sys.modules, name, raising=False)

    return write

