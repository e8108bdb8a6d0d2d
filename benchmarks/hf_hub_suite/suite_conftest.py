"""conftest.py for huggingface_hub's own test suite, run against a local ``adapterhub hub serve``.

``run.py`` copies this file into the unpacked ``tests/`` folder of the huggingface_hub sdist (the
sdist does not ship the project's conftest.py). It provides what the tests import from it
(:class:`RepoFactory`) and the fixtures they use (``api``, ``repo_factory``, ``api_prod``), marks
the tests ``scope.py`` puts out of scope as skipped, and records for every test whether it
passed and whether it reached the server (the server's access log grew while it ran). The record
is written as JSON to ``$HF_SUITE_RESULTS`` for ``run.py`` to summarise.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import huggingface_hub
from huggingface_hub import HfApi, RepoUrl

from scope import out_of_scope_reason  # noqa: I001  (run.py puts scope.py on sys.path)

from .testing_constants import ENDPOINT_STAGING, TOKEN
from .testing_utils import repo_name

_ACCESS_LOG = Path(os.environ["HF_SUITE_ACCESS_LOG"])
_RESULTS: dict[str, dict[str, Any]] = {}
#: (fixture name, id of the node it was set up for) of fixtures that made requests: a test using a
#: shared (class- or module-scoped) fixture that reached the server reached it too.
_NETWORKED_FIXTURES: set[tuple[str, str]] = set()


def _log_size() -> int:
    try:
        return _ACCESS_LOG.stat().st_size
    except FileNotFoundError:
        return 0


class RepoFactory:
    """``repo_factory(repo_type=None, *, repo_id=None, token=None, **create_repo_kwargs)``.

    Creates a repo (a fresh name under the token's user unless ``repo_id`` is given; a ``repo_id``
    without a namespace goes under the token's user) and deletes every repo it created when the
    test ends.
    """

    def __init__(self) -> None:
        self._created: list[tuple[HfApi, str, str]] = []

    def __call__(
        self, repo_type: str | None = None, *, repo_id: str | None = None, token: str | None = None, **kwargs: Any
    ) -> RepoUrl:
        api = HfApi(endpoint=ENDPOINT_STAGING, token=token or TOKEN)
        repo_id = repo_id or repo_name()
        if "/" not in repo_id:
            repo_id = f"{api.whoami()['name']}/{repo_id}"
        url = api.create_repo(repo_id=repo_id, repo_type=repo_type, **kwargs)
        self._created.append((api, url.repo_id, url.repo_type))
        return url

    def cleanup(self) -> None:
        for api, repo_id, repo_type in reversed(self._created):
            try:
                api.delete_repo(repo_id=repo_id, repo_type=repo_type, missing_ok=True)
            except Exception:  # noqa: BLE001  (a test may have moved or deleted it already)
                pass


@pytest.fixture(scope="session")
def api() -> HfApi:
    return HfApi(endpoint=ENDPOINT_STAGING, token=TOKEN)


@pytest.fixture
def repo_factory() -> Iterator[RepoFactory]:
    factory = RepoFactory()
    yield factory
    factory.cleanup()


@pytest.fixture
def new_repo_id(api: HfApi) -> Iterator[str]:
    """A fresh repo id under the test user; the repo (if a test created it) is deleted afterwards."""
    repo_id = f"{api.whoami()['name']}/{repo_name()}"
    yield repo_id
    api.delete_repo(repo_id=repo_id, missing_ok=True)


@pytest.fixture(autouse=True)
def _own_token_files(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test logs in and out on token files of its own."""
    folder = tmp_path_factory.mktemp("hf-token")
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(folder / "token"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_STORED_TOKENS_PATH", str(folder / "stored_tokens"))


@pytest.fixture
def api_prod() -> HfApi:
    pytest.skip("needs huggingface.co (production)")


@pytest.fixture(autouse=True)
def _no_experimental_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_EXPERIMENTAL_WARNING", True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        reason = out_of_scope_reason(item)
        _RESULTS[item.nodeid] = {"scope": reason or "in", "outcome": None, "reached": False}
        if reason:
            item.add_marker(pytest.mark.skip(reason=f"out of scope: {reason}"))


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef, request: pytest.FixtureRequest) -> Iterator[None]:
    before = _log_size()
    yield
    if _log_size() > before:
        _NETWORKED_FIXTURES.add((fixturedef.argname, request.node.nodeid))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    before = _log_size()
    yield
    record = _RESULTS.setdefault(item.nodeid, {"scope": "in", "outcome": None, "reached": False})
    chain = {node.nodeid for node in item.listchain()}
    shared = any((name, node) in _NETWORKED_FIXTURES for name in item.fixturenames for node in chain)
    record["reached"] = record["reached"] or shared or _log_size() > before


def _short_error(report: pytest.TestReport) -> str:
    """The failing line (tests may patch the terminal helpers that full reports use)."""
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        return f"{crash.path}:{crash.lineno}: {crash.message}"[-3000:]
    return str(report.longrepr)[-3000:]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    record = _RESULTS.setdefault(report.nodeid, {"scope": "in", "outcome": None, "reached": False})
    if report.failed:
        record["outcome"] = "failed"
        record.setdefault("error", _short_error(report))
    elif report.skipped and record["outcome"] is None:
        record["outcome"] = "skipped"
    elif report.when == "call" and report.passed and record["outcome"] is None:
        record["outcome"] = "passed"


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.failed:
        lines = [line for line in report.longreprtext.strip().splitlines() if line.strip()]
        _RESULTS[report.nodeid] = {"scope": "in", "outcome": "failed", "reached": False,
                                   "collection_error": lines[-1] if lines else "?"}


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = os.environ.get("HF_SUITE_RESULTS")
    if path:
        Path(path).write_text(json.dumps(_RESULTS, indent=1))
