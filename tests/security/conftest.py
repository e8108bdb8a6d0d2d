"""Fixtures for the security regression tests: a local Hub subprocess, driven by the real client."""

from __future__ import annotations

import itertools

import pytest

from adapterhub.server.testing import running_hub

USERS = {"alice": "tok-alice-security-0001", "bob": "tok-bob-security-0002"}
#: A small request-body limit, so the limit can be shown with tiny uploads.
MAX_BODY = 8 * 1024

_counter = itertools.count()


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with running_hub(tmp_path_factory.mktemp("security-hub"), USERS, lfs_threshold=2 * MAX_BODY,
                     env={"ADAPTERHUB_HUB_MAX_BODY_BYTES": str(MAX_BODY)}) as running:
        yield running


@pytest.fixture
def api(hub):
    from huggingface_hub import HfApi

    def make(user: str | None) -> HfApi:
        return HfApi(endpoint=hub.url, token=USERS[user] if user else False)

    return make


@pytest.fixture
def repo_name(request) -> str:
    return f"{request.node.name.split('[')[0].replace('_', '-')[:40].strip('-')}-{next(_counter)}"
