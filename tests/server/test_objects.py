"""The data model (:mod:`adapterhub.server.objects`): deterministic commit ids (end to end, on two
hubs, and as a unit), tree entries and LFS pointers."""

from __future__ import annotations

import hashlib

from huggingface_hub import HfApi

from adapterhub.server.objects import Commit, TreeEntry, git_blob_sha1, lfs_pointer


def _publish(hub, folder):
    api = HfApi(endpoint=hub.url, token=hub.users["alice"])
    api.create_repo("alice/same-release")
    info = api.upload_folder(repo_id="alice/same-release", folder_path=folder, commit_message="release 1.0.0")
    api.create_tag("alice/same-release", tag="v1.0.0", revision=info.oid)
    return info.oid


def test_same_release_on_two_fresh_hubs_has_the_same_commit(tmp_path, fresh_hub):
    """Commit ids hash what a commit is, not when it was made: the same release pushed to two
    fresh hubs gets the same commit id, which is what lets a registry entry pin a commit that any
    hub holding that release can serve."""
    folder = tmp_path / "release"
    folder.mkdir()
    (folder / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    (folder / "weights.bin").write_bytes(bytes(range(256)) * 8)

    with fresh_hub(tmp_path / "hub-a") as hub_a:
        first = _publish(hub_a, folder)
    with fresh_hub(tmp_path / "hub-b") as hub_b:
        second = _publish(hub_b, folder)
        other = HfApi(endpoint=hub_b.url, token=hub_b.users["alice"])
        other.create_repo("alice/other-repo")
        root_of_other = other.list_repo_commits("alice/other-repo")[-1].commit_id
        root_of_same = other.list_repo_commits("alice/same-release")[-1].commit_id
    assert len(first) == 40
    assert first == second
    # Different repos never share a root commit.
    assert root_of_other != root_of_same


# --- units ------------------------------------------------------------------------------------

_REGULAR = TreeEntry(sha256="ab" * 32, size=3, git_sha1=git_blob_sha1(b"abc"), lfs=False)
_LFS = TreeEntry(sha256="cd" * 32, size=1 << 20, git_sha1=None, lfs=True)


def test_commit_ids_hash_content_not_dates():
    one = Commit.create("p" * 40, "title", "message", "alice", "2026-01-01T00:00:00.000Z", {"a": _REGULAR})
    same_later = Commit.create("p" * 40, "title", "message", "alice", "2027-06-01T00:00:00.000Z", {"a": _REGULAR})
    assert one.id == same_later.id and len(one.id) == 40
    for changed in (
        Commit.create(None, "title", "message", "alice", one.date, {"a": _REGULAR}),
        Commit.create("p" * 40, "other", "message", "alice", one.date, {"a": _REGULAR}),
        Commit.create("p" * 40, "title", "message", "bob", one.date, {"a": _REGULAR}),
        Commit.create("p" * 40, "title", "message", "alice", one.date, {"b": _REGULAR}),
        Commit.create("p" * 40, "title", "message", "alice", one.date, {"a": _LFS}),
    ):
        assert changed.id != one.id


def test_commit_json_round_trip():
    commit = Commit.create(None, "t", "m", "alice", "2026-01-01T00:00:00.000Z", {"b": _LFS, "a": _REGULAR})
    data = commit.to_json()
    assert list(data["files"]) == ["a", "b"]
    assert Commit.from_json(data) == commit


def test_tree_entries_show_git_ids_as_the_hub_does():
    assert git_blob_sha1(b"abc") == hashlib.sha1(b"blob 3\0abc").hexdigest()
    assert _REGULAR.tree_oid == _REGULAR.git_sha1 and _REGULAR.etag == _REGULAR.git_sha1
    pointer = lfs_pointer(_LFS.sha256, _LFS.size)
    assert pointer == f"version https://git-lfs.github.com/spec/v1\noid sha256:{'cd' * 32}\nsize {1 << 20}\n".encode()
    assert _LFS.tree_oid == git_blob_sha1(pointer) and _LFS.pointer_size == len(pointer)
    assert _LFS.etag == _LFS.sha256
    assert TreeEntry.from_json(_LFS.to_json()) == _LFS
