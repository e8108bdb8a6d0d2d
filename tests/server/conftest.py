"""One local Hub subprocess per test module, driven by the real huggingface_hub client."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from adapterhub.server.testing import running_hub

USERS = {"alice": "tok-alice-123", "bob": "tok-bob-456"}
# Files from this size on are asked to go through git-LFS (the root conftest sets HF_HUB_DISABLE_XET=1).
LFS_THRESHOLD = 64 * 1024

_counter = itertools.count()


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with running_hub(tmp_path_factory.mktemp("hubroot"), USERS, lfs_threshold=LFS_THRESHOLD) as running:
        yield running


@pytest.fixture
def alice(hub):
    from huggingface_hub import HfApi

    return HfApi(endpoint=hub.url, token=USERS["alice"])


@pytest.fixture
def bob(hub):
    from huggingface_hub import HfApi

    return HfApi(endpoint=hub.url, token=USERS["bob"])


@pytest.fixture
def anon(hub):
    from huggingface_hub import HfApi

    return HfApi(endpoint=hub.url, token=False)


@pytest.fixture
def cache_dir(tmp_path) -> Path:
    return tmp_path / "hf-cache"


@pytest.fixture
def repo_name(request) -> str:
    """A fresh repo name per test, since the server is shared by the module."""
    return f"{request.node.name.split('[')[0].replace('_', '-')[:60]}-{next(_counter)}"
