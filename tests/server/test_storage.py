"""On-disk storage (:mod:`adapterhub.server.storage`): repos, commits all or nothing, refs, blobs,
and writes that are atomic and fsynced."""

from __future__ import annotations

import hashlib
import io
import json
import os

import pytest

from adapterhub.fileio import dump_json
from adapterhub.server.errors import HubError
from adapterhub.server.objects import AddFile, DeleteFile, DeleteFolder, TreeEntry


def _files(storage, repo, rev="main"):
    return sorted(storage.resolve(repo, rev).files)


def test_a_new_repo_has_one_empty_commit_on_main(storage):
    repo = storage.create_repo("models", "alice/r", private=True, author="alice")
    assert (repo.type, repo.id, repo.private, repo.namespace) == ("models", "alice/r", True, "alice")
    head = storage.resolve(repo, "main")
    assert head.parent is None and head.files == {} and head.title == "initial commit"
    assert storage.refs(repo) == {"branches": {"main": head.id}, "tags": {}}
    assert [r.id for r in storage.list_repos("models")] == ["alice/r"]
    with pytest.raises(HubError) as exists:
        storage.create_repo("models", "alice/r", private=False, author="alice")
    assert exists.value.status == 409
    storage.set_private(repo, False)
    assert storage.get_repo("models", "alice/r").private is False
    storage.delete_repo(repo)
    with pytest.raises(HubError) as gone:
        storage.get_repo("models", "alice/r")
    assert (gone.value.status, gone.value.code) == (404, "RepoNotFound")
    assert not list(storage.tmp.iterdir())


def test_commits_apply_operations_and_keep_history(storage):
    repo = storage.create_repo("models", "alice/r", private=False, author="alice")
    a, b = storage.put_bytes(b"a"), storage.put_bytes(b"b")
    first = storage.commit(repo, "main", [AddFile("a.txt", a), AddFile("d/b.txt", b), AddFile("d/c.txt", b)],
                           title="add", message="", author="alice")
    assert _files(storage, repo) == ["a.txt", "d/b.txt", "d/c.txt"]
    second = storage.commit(repo, "main", [DeleteFile("a.txt"), DeleteFolder("d")], title="rm", message="",
                            author="alice", parent_commit=first.id)
    assert _files(storage, repo) == [] and _files(storage, repo, first.id) == ["a.txt", "d/b.txt", "d/c.txt"]
    assert [c.title for c in storage.history(repo, second)] == ["rm", "add", "initial commit"]
    assert storage.read_commit(repo, first.id) == first


@pytest.mark.parametrize(
    ("branch", "ops", "parent", "status"),
    [
        ("main", [DeleteFile("missing.txt")], None, 404),
        ("main", [DeleteFolder("missing")], None, 404),
        ("main", "missing-blob", None, 422),
        ("main", [], "0" * 40, 412),
        ("v1", [], None, 400),  # a tag
        ("nope", [], None, 404),
    ],
)
def test_a_failed_commit_changes_nothing(storage, branch, ops, parent, status):
    repo = storage.create_repo("models", "alice/r", private=False, author="alice")
    storage.set_ref(repo, "tag", "v1", "main")
    if ops == "missing-blob":
        ops = [AddFile("x", TreeEntry(sha256="ee" * 32, size=1, git_sha1=None, lfs=True))]
    before = storage.refs(repo)
    with pytest.raises(HubError) as err:
        storage.commit(repo, branch, ops, title="t", message="", author="alice", parent_commit=parent)
    assert err.value.status == status
    assert storage.refs(repo) == before


def test_branches_and_tags(storage):
    repo = storage.create_repo("models", "alice/r", private=False, author="alice")
    root = storage.resolve(repo, "main")
    storage.set_ref(repo, "branch", "dev", "main")
    storage.set_ref(repo, "tag", "v1", "dev")
    assert storage.resolve(repo, "refs/heads/dev").id == storage.resolve(repo, "refs/tags/v1").id == root.id
    assert storage.resolve(repo, root.id).id == root.id
    with pytest.raises(HubError) as dup:
        storage.set_ref(repo, "tag", "v1", "main")
    assert dup.value.status == 409
    storage.set_ref(repo, "tag", "v1", "main", exist_ok=True)
    with pytest.raises(HubError) as clash:
        storage.set_ref(repo, "tag", "dev", "main")  # a tag may not shadow a branch
    assert clash.value.status == 409
    with pytest.raises(HubError) as main:
        storage.set_ref(repo, "branch", "main", None)
    assert main.value.status == 403
    storage.set_ref(repo, "tag", "v1", None)
    storage.set_ref(repo, "branch", "dev", None)
    for rev in ("dev", "v1", "refs/heads/dev", "f" * 40):
        with pytest.raises(HubError) as missing:
            storage.resolve(repo, rev)
        assert missing.value.code == "RevisionNotFound"


def test_blobs_are_content_addressed_and_uploads_checked(storage):
    entry = storage.put_bytes(b"hello")
    sha = hashlib.sha256(b"hello").hexdigest()
    assert (entry.sha256, entry.size, entry.lfs) == (sha, 5, False)
    assert storage.blob_path(sha).read_bytes() == b"hello" and storage.has_blob(sha, 5)
    assert not storage.has_blob(sha, 4)
    big = b"z" * 3000
    oid = hashlib.sha256(big).hexdigest()
    for wrong in (b"y" * 3000, big[:-1], big + b"!"):
        with pytest.raises(HubError) as err:
            storage.put_stream(io.BytesIO(wrong), oid, len(big))
        assert err.value.status == 400
        assert not storage.has_blob(oid)
    storage.put_stream(io.BytesIO(big), oid, len(big))
    assert storage.blob_path(oid).read_bytes() == big
    assert not list(storage.tmp.iterdir())
    with pytest.raises(HubError):
        storage.blob_path("../../etc/passwd")


def test_writes_are_fsynced_atomic_and_canonical_json(storage, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    repo = storage.create_repo("models", "alice/r", private=False, author="alice")
    assert len(synced) == 3  # commit, refs, repo.json
    entry = storage.put_bytes(b"data")
    storage.commit(repo, "main", [AddFile("f", entry)], title="t", message="", author="alice")
    assert len(synced) == 6  # + blob, commit, refs
    refs = repo.path / "refs.json"
    assert refs.read_text() == dump_json(json.loads(refs.read_text()))
    leftovers = [p for p in storage.root.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == [] and not list(storage.tmp.iterdir())


def test_text_that_is_not_utf8_round_trips(storage):
    """Request JSON can carry lone surrogates; they are stored as JSON escapes and read back as sent."""
    repo = storage.create_repo("models", "alice/r", private=False, author="alice")
    entry = storage.put_bytes(b"x")
    new = storage.commit(repo, "main", [AddFile("caf\xe9/\ud800.txt", entry)], title="bad \udcff", message="\u2713",
                         author="alice")
    back = storage.resolve(repo, "main")
    assert back == new and back.title == "bad \udcff" and list(back.files) == ["caf\xe9/\ud800.txt"]
