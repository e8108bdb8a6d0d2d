"""Test-wide isolation: every test gets its own ADAPTERHUB_HOME and HF cache, and nothing can
reach huggingface.co (telemetry off, no token from the developer's machine)."""

from __future__ import annotations

import os

import pytest

# Set before anything imports huggingface_hub, which reads these at import time.
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.pop("HF_TOKEN", None)
for _name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "ADAPTERHUB_OFFLINE", "HF_ENDPOINT"):
    os.environ.pop(_name, None)

# huggingface_hub freezes HF_HUB_OFFLINE, HF_ENDPOINT, ... when first imported: import it now, with
# the clean environment above, so that no test that sets those variables can freeze them for the rest.
import huggingface_hub.constants  # noqa: E402,F401


@pytest.fixture(autouse=True)
def _restore_environment():
    """Whatever a test (or code it imports) does to os.environ is undone afterwards."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch, _restore_environment):
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("ADAPTERHUB_HOME", str(home / "adapterhub"))
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hf" / "hub"))
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    monkeypatch.delenv("ADAPTERHUB_INDEX", raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    yield home
