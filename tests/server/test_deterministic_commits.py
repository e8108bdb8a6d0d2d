"""Commit ids hash what a commit is, not when it was made: the same release pushed to two
fresh hubs gets the same commit id, which is what lets a registry entry pin a commit that any
hub holding that release can serve."""

from __future__ import annotations

from huggingface_hub import HfApi

from adapterhub.server.testing import running_hub

USERS = {"alice": "tok-alice-123"}


def _publish(hub, folder):
    api = HfApi(endpoint=hub.url, token=USERS["alice"])
    api.create_repo("alice/same-release")
    info = api.upload_folder(repo_id="alice/same-release", folder_path=folder, commit_message="release 1.0.0")
    api.create_tag("alice/same-release", tag="v1.0.0", revision=info.oid)
    return info.oid


def test_same_release_on_two_fresh_hubs_has_the_same_commit(tmp_path):
    folder = tmp_path / "release"
    folder.mkdir()
    (folder / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    (folder / "weights.bin").write_bytes(bytes(range(256)) * 8)

    with running_hub(tmp_path / "hub-a", USERS) as hub_a:
        first = _publish(hub_a, folder)
    with running_hub(tmp_path / "hub-b", USERS) as hub_b:
        second = _publish(hub_b, folder)
        other = HfApi(endpoint=hub_b.url, token=USERS["alice"])
        other.create_repo("alice/other-repo")
        root_of_other = other.list_repo_commits("alice/other-repo")[-1].commit_id
        root_of_same = other.list_repo_commits("alice/same-release")[-1].commit_id
    assert len(first) == 40
    assert first == second
    # Different repos never share a root commit.
    assert root_of_other != root_of_same
