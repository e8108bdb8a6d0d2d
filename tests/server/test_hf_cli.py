"""The ``hf`` command line (huggingface_hub's CLI) against the local Hub: repos, files, branches,
tags, settings and pull requests, each command as a user types it. In process (click's runner),
with the endpoint and token where ``hf`` reads them."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from huggingface_hub import constants
from huggingface_hub.cli.hf import app

from .conftest import USERS

pytestmark = pytest.mark.usefixtures("no_xet")


@pytest.fixture
def hf(hub, monkeypatch, tmp_path):
    """``hf("repos create x")`` runs the command as alice; ``hf(..., user="bob")`` as someone else."""
    import huggingface_hub.hf_api

    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(huggingface_hub.hf_api.api, "endpoint", hub.url)  # `hf auth whoami` uses this one
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("NO_COLOR", "1")

    def run(*args: str, user: str = "alice", ok: bool = True):
        monkeypatch.setenv("HF_TOKEN", USERS[user])
        result = CliRunner().invoke(app, list(args))
        if ok:
            assert result.exit_code == 0, f"hf {' '.join(args)}\n{result.output}\n{result.exception!r}"
        return result

    return run


def test_repos_files_branches_tags_and_settings(hub, hf, alice, repo_name, tmp_path):
    repo_id = f"alice/{repo_name}"
    assert "alice" in hf("auth", "whoami").output
    hf("repos", "create", repo_id, "--private")
    assert alice.model_info(repo_id).private

    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text('{"r": 8}')
    (folder / "notes.txt").write_text("notes")
    (folder / "adapter_model.safetensors").write_bytes(b"\0" * 1000)
    hf("upload", repo_id, str(folder), ".", "--commit-message", "First release")
    assert sorted(alice.list_repo_files(repo_id)) == [".gitattributes", "adapter_config.json",
                                                      "adapter_model.safetensors", "notes.txt"]
    info = json.loads(hf("models", "info", repo_id, "--format", "json").output)
    assert info["id"] == repo_id and info["private"] is True

    out = tmp_path / "out"
    hf("download", repo_id, "adapter_config.json", "--local-dir", str(out))
    assert (out / "adapter_config.json").read_text() == '{"r": 8}'
    hf("repos", "cp", f"hf://{repo_id}/notes.txt", str(tmp_path / "notes-copy.txt"))
    assert (tmp_path / "notes-copy.txt").read_text() == "notes"

    hf("repos", "branch", "create", repo_id, "dev")
    hf("repos", "tag", "create", repo_id, "v1.0")
    assert "v1.0" in hf("repos", "tag", "list", repo_id).output
    assert hf("repos", "tag", "create", repo_id, "v1.0", ok=False).exit_code != 0  # exists
    hf("repos", "tag", "delete", repo_id, "v1.0", "--yes")
    hf("repos", "branch", "delete", repo_id, "dev")
    refs = alice.list_repo_refs(repo_id)
    assert [b.name for b in refs.branches] == ["main"] and refs.tags == []

    hf("repos", "settings", repo_id, "--public", "--gated", "manual")
    info = alice.model_info(repo_id)
    assert (info.private, info.gated) == (False, "manual")
    hf("repos", "delete-files", repo_id, "*.txt")
    assert "notes.txt" not in alice.list_repo_files(repo_id)

    listed = json.loads(hf("repos", "ls", "--format", "json").output)
    assert repo_id in [r["id"] for r in listed]
    hf("repos", "move", repo_id, f"{repo_id}-moved")
    assert alice.model_info(f"{repo_id}-moved").id == f"{repo_id}-moved"
    hf("repos", "delete", f"{repo_id}-moved", "--yes")
    assert not alice.repo_exists(f"{repo_id}-moved")


def test_pull_requests_from_the_command_line(hub, hf, alice, repo_name, tmp_path):
    repo_id = f"alice/{repo_name}"
    alice.create_repo(repo_id)
    change = tmp_path / "README.md"
    change.write_text("---\nlicense: mit\n---\n# Card\n")
    hf("upload", repo_id, str(change), "README.md", "--create-pr", "--commit-message", "Add a card", user="bob")
    listed = json.loads(hf("discussions", "list", repo_id, "--format", "json").output)
    assert [(d["num"], d["title"]) for d in listed] == [(1, "Add a card")]
    assert json.loads(hf("discussions", "info", repo_id, "1").output)["is_pull_request"] is True
    assert "+license: mit" in hf("discussions", "diff", repo_id, "1").output
    hf("discussions", "comment", repo_id, "1", "--body", "Looks good", user="carol")
    assert hf("discussions", "merge", repo_id, "1", "--yes", user="bob", ok=False).exit_code != 0  # not a writer
    assert "Merged #1" in hf("discussions", "merge", repo_id, "1", "--yes").output
    assert "README.md" in alice.list_repo_files(repo_id)

    hf("discussions", "create", repo_id, "--title", "Question", "--body", "Which base model?", user="carol")
    hf("discussions", "rename", repo_id, "2", "Which base?", user="carol")
    hf("discussions", "close", repo_id, "2", "--yes")
    hf("discussions", "reopen", repo_id, "2", "--yes")
    details = alice.get_discussion_details(repo_id, 2)
    assert (details.title, details.status) == ("Which base?", "open")
