"""A broken third-party plugin, installed for real (an entry point in the ``adapterhub`` group), seen
from the command line: one warning by default; with ADAPTERHUB_STRICT_PLUGINS=1 an ``error:`` line
and exit 1, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture
def broken_plugin_path(tmp_path) -> Path:
    """A site directory holding an installed distribution whose plugin module raises on import."""
    site = tmp_path / "site"
    (site / "adapterhub_broken_demo.py").parent.mkdir(parents=True)
    (site / "adapterhub_broken_demo.py").write_text("raise RuntimeError('kaboom at import')\n")
    dist = site / "adapterhub_broken_demo-0.1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: adapterhub-broken-demo\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text("[adapterhub]\nbroken = adapterhub_broken_demo\n")
    return site


def _run(site: Path, *args: str, strict: bool) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("ADAPTERHUB_LOAD_PLUGINS", "ADAPTERHUB_DEBUG")}
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    if strict:
        env["ADAPTERHUB_STRICT_PLUGINS"] = "1"
    else:
        env.pop("ADAPTERHUB_STRICT_PLUGINS", None)
    return subprocess.run([sys.executable, "-P", "-m", "adapterhub", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_strict_mode_is_an_error_line_and_exit_1(broken_plugin_path):
    result = _run(broken_plugin_path, "methods", strict=True)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("error: adapterhub plugin 'broken' failed to load (RuntimeError: kaboom at import)")
    assert "hint: " in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) <= 3


def test_without_strict_mode_it_warns_once_and_the_command_works(broken_plugin_path):
    result = _run(broken_plugin_path, "methods", strict=False)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("failed to load") == 1
    assert result.stderr.startswith("warning: adapterhub plugin 'broken' failed to load and was skipped")
    assert "lora" in result.stdout and "Traceback" not in result.stderr
