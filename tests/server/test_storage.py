"""On-disk storage (:mod:`adapterhub.server.storage`): repos (case-insensitive ids, moves), refs
(branches, tags, pull requests, abbreviated commit ids), writes that are atomic and fsynced, and
the upgrade of roots written by the previous layout."""

from __future__ import annotations

import json
import os

import pytest

from adapterhub.fileio import dump_json
from adapterhub.server.blobs import owns
from adapterhub.server.errors import HubError
from adapterhub.server.history import commit
from adapterhub.server.objects import AddFile
from adapterhub.server.patterns import default_gitattributes
from adapterhub.server.storage import HubStorage


def _files(storage, repo, rev="main"):
    return sorted(storage.resolve(repo, rev).files)


def test_a_new_repo_holds_the_hubs_gitattributes_on_main(storage):
    repo = storage.create_repo("models", "alice/r", private=True, author="alice")
    assert (repo.type, repo.id, repo.private, repo.namespace, repo.gated) == ("models", "alice/r", True, "alice", False)
    head = storage.resolve(repo, "main")
    assert head.parent is None and list(head.files) == [".gitattributes"] and head.title == "initial commit"
    attributes = storage.blobs.path(head.files[".gitattributes"].sha256).read_bytes()
    assert attributes == default_gitattributes("models") and b"*.safetensors filter=lfs" in attributes
    assert owns(repo.path, head.files[".gitattributes"].sha256)
    assert storage.refs(repo) == {"branches": {"main": head.id}, "tags": {}, "pulls": {}}
    assert [r.id for r in storage.list_repos("models")] == ["alice/r"]
    with pytest.raises(HubError) as exists:
        storage.create_repo("models", "alice/r", private=False, author="alice")
    assert exists.value.status == 409
    assert storage.update_repo(repo, private=False, gated="manual").gated == "manual"
    assert storage.get_repo("models", "alice/r").private is False
    storage.delete_repo(repo)
    with pytest.raises(HubError) as gone:
        storage.get_repo("models", "alice/r")
    assert (gone.value.status, gone.value.code) == (404, "RepoNotFound")
    assert not list(storage.tmp.iterdir())


def test_dataset_repos_get_the_dataset_patterns(storage):
    repo = storage.create_repo("datasets", "alice/d", private=False, author="alice")
    entry = storage.resolve(repo, "main").files[".gitattributes"]
    assert b"*.png filter=lfs" in storage.blobs.path(entry.sha256).read_bytes()
    assert b"*.png" not in default_gitattributes("models")


def test_repo_ids_are_case_insensitive_and_keep_their_case(storage):
    repo = storage.create_repo("models", "Alice/MyLoRA", private=False, author="Alice")
    assert repo.path.name == "mylora" and repo.path.parent.name == "alice"
    for spelling in ("alice/mylora", "ALICE/MYLORA", "Alice/MyLoRA"):
        assert storage.get_repo("models", spelling).id == "Alice/MyLoRA"
    with pytest.raises(HubError) as clash:
        storage.create_repo("models", "alice/mylora", private=False, author="alice")
    assert clash.value.status == 409
    assert [r.id for r in storage.list_repos("models")] == ["Alice/MyLoRA"]


def test_a_moved_repo_is_found_under_its_old_id_until_the_name_is_reused(storage):
    repo = storage.create_repo("models", "alice/old", private=True, author="alice")
    moved = storage.move_repo(repo, "alice/new")
    assert moved.id == "alice/new" and moved.private and not repo.path.exists()
    assert storage.get_repo("models", "alice/old").id == "alice/new"
    with pytest.raises(HubError) as no_follow:
        storage.get_repo("models", "alice/old", follow=False)
    assert no_follow.value.status == 404
    other = storage.create_repo("models", "alice/other", private=False, author="alice")
    with pytest.raises(HubError) as taken:
        storage.move_repo(other, "alice/new")
    assert taken.value.status == 409 and "already exists" in taken.value.message
    reused = storage.create_repo("models", "alice/old", private=False, author="alice")
    assert storage.get_repo("models", "alice/old").path == reused.path
    back = storage.move_repo(storage.get_repo("models", "alice/new"), "bob/new")
    assert storage.get_repo("models", "alice/new").id == back.id == "bob/new"


def test_revisions_resolve_by_name_ref_and_full_or_short_id(storage):
    repo = storage.create_repo("models", "alice/r", private=False, author="alice")
    first = commit(storage, repo, "main", [AddFile("a", storage.blobs.put_bytes(b"a"))], title="a", message="",
                   author="alice")
    storage.set_ref(repo, "branch", "dev", "main")
    storage.set_ref(repo, "tag", "v1", first.id[:7])
    refs = storage.refs(repo)
    refs["pulls"]["3"] = first.id
    storage.write_refs(repo, refs)
    for rev in ("main", "dev", "v1", "refs/heads/dev", "refs/tags/v1", "refs/pr/3", first.id, first.id[:7],
                first.id[:5].upper()):
        assert storage.resolve(repo, rev).id == first.id, rev
    for rev in ("refs/pr/4", "refs/heads/v1", first.id[:4], "f" * 40, "nope"):
        with pytest.raises(HubError) as missing:
            storage.resolve(repo, rev)
        assert missing.value.code == "RevisionNotFound" and missing.value.message == f"Invalid rev id: {rev}"


def test_branches_and_tags(storage):
    repo = storage.create_repo("models", "alice/r", private=False, author="alice")
    root = storage.resolve(repo, "main")
    storage.set_ref(repo, "branch", "dev", "main")
    storage.set_ref(repo, "tag", "v1", "dev")
    assert storage.resolve(repo, "refs/heads/dev").id == storage.resolve(repo, "refs/tags/v1").id == root.id
    with pytest.raises(HubError) as dup:
        storage.set_ref(repo, "tag", "v1", "main")
    assert dup.value.status == 409 and dup.value.message == "Reference refs/tags/v1 already exists"
    storage.set_ref(repo, "tag", "v1", "main", exist_ok=True)
    with pytest.raises(HubError) as clash:
        storage.set_ref(repo, "tag", "dev", "main")  # a tag may not shadow a branch
    assert clash.value.status == 409
    storage.set_ref(repo, "branch", "v1", "main")  # a branch may have a tag's name; branches win
    with pytest.raises(HubError) as missing_first:
        storage.set_ref(repo, "tag", "bad name", "nope")  # the revision is checked before the name
    assert missing_first.value.code == "RevisionNotFound"
    with pytest.raises(HubError) as bad_name:
        storage.set_ref(repo, "tag", "bad name", "main")
    assert bad_name.value.status == 400
    with pytest.raises(HubError) as main:
        storage.set_ref(repo, "branch", "main", None)
    assert main.value.status == 403 and "Cannot delete refs/heads/main" in main.value.message
    storage.set_ref(repo, "tag", "v1", None)
    storage.set_ref(repo, "branch", "dev", None)
    with pytest.raises(HubError) as gone:
        storage.set_ref(repo, "branch", "dev", None)
    assert gone.value.code == "RevisionNotFound"


def test_writes_are_fsynced_atomic_and_canonical_json(storage, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    repo = storage.create_repo("models", "alice/r", private=False, author="alice")
    assert len(synced) == 4  # .gitattributes blob, commit, refs, repo.json
    entry = storage.blobs.put_bytes(b"data")
    commit(storage, repo, "main", [AddFile("f", entry)], title="t", message="", author="alice")
    assert len(synced) == 7  # + blob, commit, refs
    refs = repo.path / "refs.json"
    assert refs.read_text() == dump_json(json.loads(refs.read_text()))
    leftovers = [p for p in storage.root.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == [] and not list(storage.tmp.iterdir())


def test_text_that_is_not_utf8_round_trips(storage):
    """Request JSON can carry lone surrogates; they are stored as JSON escapes and read back as sent."""
    repo = storage.create_repo("models", "alice/r", private=False, author="alice")
    entry = storage.blobs.put_bytes(b"x")
    new = commit(storage, repo, "main", [AddFile("caf\xe9/\ud800.txt", entry)], title="bad \udcff",
                 message="\u2713", author="alice")
    back = storage.resolve(repo, "main")
    assert back == new and back.title == "bad \udcff" and "caf\xe9/\ud800.txt" in back.files


def test_a_root_of_the_previous_layout_is_upgraded(tmp_path):
    """Mixed-case folders move to lower case, ids are kept, and repos own the blobs of their commits."""
    storage = HubStorage(tmp_path / "root")
    repo = storage.create_repo("models", "Alice/Old", private=False, author="Alice")
    sha = commit(storage, repo, "main", [AddFile("w.bin", storage.blobs.put_bytes(b"w"))], title="t", message="",
                 author="Alice").files["w.bin"].sha256
    # Turn it into what the previous version wrote: folders named as given, no id, no owned blobs.
    legacy = repo.path.parent.parent / "Alice" / "Old"
    legacy.parent.mkdir()
    os.replace(repo.path, legacy)
    meta = json.loads((legacy / "repo.json").read_text())
    del meta["id"], meta["gated"]
    (legacy / "repo.json").write_text(json.dumps(meta))
    for marker in (legacy / "owned").iterdir():
        marker.unlink()
    (storage.root / "format.json").unlink()
    upgraded = HubStorage(storage.root).get_repo("models", "alice/old")
    assert upgraded.id == "Alice/Old" and upgraded.path.name == "old" and not legacy.exists()
    assert owns(upgraded.path, sha)
    assert json.loads((storage.root / "format.json").read_text()) == {"version": 2}
