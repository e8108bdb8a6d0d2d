"""Fixtures of the server tests, one convention for all of them.

End-to-end tests share one ``adapterhub hub serve`` subprocess per test module (:func:`hub`),
driven by the real huggingface_hub client (:func:`alice`, :func:`bob`, :func:`carol`, :func:`anon`, or
:func:`hf_api` for any token); :func:`fresh_hub` starts more hubs on roots of their own. Unit
tests use :func:`storage` (a :class:`HubStorage` on a temporary root) or :func:`app_client`
(Flask's in-process client of :func:`create_app`, no sockets).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from adapterhub.server.testing import running_hub

USERS = {"alice": "tok-alice-123", "bob": "tok-bob-456", "carol": "tok-carol-789"}
#: An organisation with one member of each role.
ORGS = {"team": ["alice=admin", "bob=write", "carol=read"]}
# Files from this size on are asked to go through git-LFS (the root conftest sets HF_HUB_DISABLE_XET=1).
LFS_THRESHOLD = 64 * 1024

_counter = itertools.count()


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with running_hub(tmp_path_factory.mktemp("hubroot"), USERS, lfs_threshold=LFS_THRESHOLD, orgs=ORGS) as running:
        yield running


@pytest.fixture
def fresh_hub():
    """``with fresh_hub(root) as hub:`` runs another hub (same users, no LFS) on its own root."""
    return lambda root: running_hub(root, USERS)


@pytest.fixture
def hf_api(hub):
    """``hf_api(token)``: a huggingface_hub client of the module's hub with that token."""
    from huggingface_hub import HfApi

    return lambda token: HfApi(endpoint=hub.url, token=token)


@pytest.fixture
def alice(hf_api):
    return hf_api(USERS["alice"])


@pytest.fixture
def bob(hf_api):
    return hf_api(USERS["bob"])


@pytest.fixture
def carol(hf_api):
    return hf_api(USERS["carol"])


@pytest.fixture
def anon(hf_api):
    return hf_api(False)


@pytest.fixture
def no_xet(monkeypatch):
    """The root conftest sets HF_HUB_DISABLE_XET=1 before the import; this makes the dependency explicit."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)


@pytest.fixture
def global_endpoint(monkeypatch):
    """``global_endpoint(url)`` points huggingface_hub's process-wide endpoint at a test hub.

    huggingface_hub 2.0 builds a few URLs from ``constants.ENDPOINT`` (what ``HF_ENDPOINT`` sets)
    instead of the client's own ``endpoint``: access requests, user and organisation overviews,
    organisation members. Later releases use the client's endpoint; users of 2.0 set
    ``HF_ENDPOINT``, which is what this does for the test (both constants it sets at import).
    """
    from huggingface_hub import constants

    def point(url: str) -> None:
        monkeypatch.setattr(constants, "ENDPOINT", url)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}")

    return point


@pytest.fixture
def hub_is_the_endpoint(hub, global_endpoint):
    global_endpoint(hub.url)


@pytest.fixture
def cache_dir(tmp_path) -> Path:
    return tmp_path / "hf-cache"


@pytest.fixture
def repo_name(request) -> str:
    """A fresh repo name per test, since the server is shared by the module."""
    return f"{request.node.name.split('[')[0].replace('_', '-')[:60]}-{next(_counter)}"


@pytest.fixture
def storage(tmp_path):
    from adapterhub.server.storage import HubStorage

    return HubStorage(tmp_path / "hub-root")


@pytest.fixture
def app_client(tmp_path):
    """Flask's test client of a fresh app with :data:`USERS` (requests never leave the process)."""
    from adapterhub.server.app import create_app

    return create_app(tmp_path / "app-root", USERS, lfs_threshold=LFS_THRESHOLD).test_client()
