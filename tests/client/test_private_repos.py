"""Private repos: `adapterhub install` sends HF_TOKEN, and without the right token fails clearly.

A Hub of its own with two users (alice owns the private repos, bob does not), seeded with the real
huggingface_hub client. The token must never reach stdout, stderr, the lock file or the store.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import entry, file_list, make_adapter, run_cli, version, write_index_dir

ALICE = "hf_alice_private_secret_9f3k2"
BOB = "hf_bob_other_secret_7q1z8"
PRIVATE_REPO = "alice/secret-lora"
INDEX_REPO = "alice/idx"
NAME = "private/secret"


@dataclass
class PrivateHub:
    url: str
    commit: str
    adapter: Path
    index_dir: Path


@pytest.fixture(scope="module")
def private_hub(tmp_path_factory) -> Iterator[PrivateHub]:
    from huggingface_hub import HfApi

    from adapterhub.client.authoring import build_index
    from adapterhub.server.testing import running_hub

    root = tmp_path_factory.mktemp("private-hub")
    with running_hub(root / "hub", {"alice": ALICE, "bob": BOB}) as hub:
        api = HfApi(endpoint=hub.url, token=ALICE)
        api.create_repo(PRIVATE_REPO, private=True)
        adapter = make_adapter(root / "src" / "secret", seed=11)
        commit = api.upload_folder(repo_id=PRIVATE_REPO, folder_path=adapter).oid
        index_dir = write_index_dir(root / "index", [
            entry(NAME, {"1.0.0": version(PRIVATE_REPO, commit, file_list(adapter))}),
        ])
        # The same index, compiled and published in a private repo (for hf://alice/idx/index.json).
        compiled = build_index(index_dir, root / "compiled" / "index.json")
        api.create_repo(INDEX_REPO, private=True)
        api.upload_file(path_or_fileobj=str(compiled), path_in_repo="index.json", repo_id=INDEX_REPO)
        assert HfApi(endpoint=hub.url, token=ALICE).model_info(PRIVATE_REPO).private is True
        yield PrivateHub(hub.url, commit, adapter, index_dir)


@pytest.fixture
def env(private_hub, monkeypatch) -> PrivateHub:
    monkeypatch.setenv("HF_ENDPOINT", private_hub.url)
    monkeypatch.setenv("ADAPTERHUB_INDEX", str(private_hub.index_dir))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("ADAPTERHUB_OFFLINE", raising=False)
    return private_hub


def _token_env(token: str | None) -> dict[str, str | None]:
    # CliRunner: a None value removes the variable for the run.
    return {"HF_TOKEN": token, "HUGGING_FACE_HUB_TOKEN": None}


def _files_containing(root: Path, secret: str) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and secret.encode() in path.read_bytes():
            hits.append(str(path))
    return hits


def _assert_token_nowhere(result, tmp_path: Path, *tokens: str) -> None:
    home = Path(os.environ["ADAPTERHUB_HOME"]).parent  # the store and the HF cache of this test
    for token in tokens:
        assert token not in result.stdout and token not in result.stderr
        assert _files_containing(home, token) == []
        assert _files_containing(tmp_path, token) == []  # lock files written by the test


def _assert_nothing_installed() -> None:
    listed = run_cli("list", "--json")
    assert listed.exit_code == 0, listed.stderr
    assert listed.json()["installed"] == []


@pytest.mark.parametrize("source", [PRIVATE_REPO, NAME], ids=["repo-id", "index-name"])
def test_owner_token_installs_private_repo(env, tmp_path, source):
    lock = tmp_path / "adapterhub.lock"
    result = run_cli("install", source, "--lock", str(lock), "--json", env=_token_env(ALICE))
    assert result.exit_code == 0, result.stderr
    [installed] = result.json()["installed"]
    assert installed["source"]["repo_id"] == PRIVATE_REPO
    assert installed["source"]["revision"] == env.commit
    assert file_list(Path(installed["path"])) == file_list(env.adapter)  # bytes identical to the upload
    assert lock.is_file() and env.commit in lock.read_text()
    verified = run_cli("verify", installed["name"], env=_token_env(ALICE))
    assert verified.exit_code == 0, verified.stderr
    _assert_token_nowhere(result, tmp_path, ALICE)
    _assert_token_nowhere(verified, tmp_path, ALICE)


@pytest.mark.parametrize("token", [BOB, None], ids=["other-users-token", "no-token"])
@pytest.mark.parametrize("source", [PRIVATE_REPO, NAME], ids=["repo-id", "index-name"])
def test_private_repo_without_access_fails_clearly(env, tmp_path, source, token):
    lock = tmp_path / "adapterhub.lock"
    result = run_cli("install", source, "--lock", str(lock), env=_token_env(token))
    assert result.exit_code == 1, result.stdout + result.stderr
    error = result.stderr
    assert PRIVATE_REPO in error
    assert "not found" in error and "private" in error
    assert "HF_TOKEN" in error
    assert "Traceback" not in error and "HfHubHTTPError" not in error
    assert not lock.exists()
    _assert_nothing_installed()
    _assert_token_nowhere(result, tmp_path, ALICE, BOB)


def test_private_hf_index_needs_the_token(env, tmp_path, monkeypatch):
    index_url = f"hf://{INDEX_REPO}/index.json"
    monkeypatch.delenv("ADAPTERHUB_INDEX")
    lock = tmp_path / "adapterhub.lock"

    result = run_cli("install", NAME, "--index", index_url, "--lock", str(lock), "--json", env=_token_env(ALICE))
    assert result.exit_code == 0, result.stderr
    [installed] = result.json()["installed"]
    assert (installed["name"], installed["version"]) == (NAME, "1.0.0")
    assert file_list(Path(installed["path"])) == file_list(env.adapter)
    assert index_url in lock.read_text()  # the registry is recorded, the token is not
    _assert_token_nowhere(result, tmp_path, ALICE)

    for token in (BOB, None):
        denied = run_cli("search", "secret", "--index", index_url, env=_token_env(token))
        assert denied.exit_code == 1, denied.stdout
        assert INDEX_REPO in denied.stderr and "not found" in denied.stderr and "private" in denied.stderr
        assert "HF_TOKEN" in denied.stderr
        _assert_token_nowhere(denied, tmp_path, ALICE, BOB)


def test_lock_and_store_have_no_token_after_installs(env, tmp_path):
    """A broader sweep: several commands with the token set, then grep everything they wrote."""
    lock = tmp_path / "adapterhub.lock"
    assert run_cli("install", NAME, "--lock", str(lock), env=_token_env(ALICE)).exit_code == 0
    results = [run_cli(*args, env=_token_env(ALICE)) for args in
               (["install", "--locked", str(lock), "--force"], ["list", "--json"], ["verify", NAME])]
    assert [r.exit_code for r in results] == [0, 0, 0], [r.stderr for r in results]
    assert json.loads(results[1].stdout)["installed"][0]["name"] == NAME
    for r in results:
        _assert_token_nowhere(r, tmp_path, ALICE)
