"""Helpers shared by the publish tests (imported by name: the test folders are not packages)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "publish"
USERS = {"alice": "tok-alice-7f3a9c", "bob": "tok-bob-51d2e8"}
BASE_REPO = "alice/tiny-bert"


def run_cli(*args: str, token: str | None = None, env: dict[str, str] | None = None, cwd: Path | None = None):
    """Run ``python -m adapterhub ARGS`` in a subprocess (the real entry point, real exit codes)."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    full_env.update(env or {})
    if token:
        full_env["HF_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "adapterhub", *args], capture_output=True, text=True, env=full_env, cwd=cwd,
        timeout=300,
    )


def copy_fixture(name: str, dest: Path) -> Path:
    target = dest / name
    shutil.copytree(FIXTURES / name, target)
    return target


def read_json(path: Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))
