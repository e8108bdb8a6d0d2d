"""File contents (:mod:`adapterhub.server.blobs`): content addressing, checked uploads, which repo
owns which blob, and garbage collection (``adapterhub hub gc``)."""

from __future__ import annotations

import hashlib
import io
import os
import time

import pytest

from adapterhub.server.blobs import collect_garbage, disown, mark_owned, owns
from adapterhub.server.errors import HubError
from adapterhub.server.history import commit
from adapterhub.server.objects import AddFile, git_blob_sha1


def test_blobs_are_content_addressed_and_uploads_checked(storage):
    blobs = storage.blobs
    entry = blobs.put_bytes(b"hello")
    sha = hashlib.sha256(b"hello").hexdigest()
    assert (entry.sha256, entry.size, entry.lfs, entry.git_sha1) == (sha, 5, False, git_blob_sha1(b"hello"))
    assert blobs.path(sha).read_bytes() == b"hello" and blobs.has(sha, 5) and not blobs.has(sha, 4)
    big = b"z" * 3000
    oid = hashlib.sha256(big).hexdigest()
    for wrong in (b"y" * 3000, big[:-1], big + b"!"):
        with pytest.raises(HubError) as err:
            blobs.put_stream(io.BytesIO(wrong), oid, len(big))
        assert err.value.status == 400
        assert not blobs.has(oid)
    uploaded = blobs.put_stream(io.BytesIO(big), oid, len(big))
    assert (uploaded.lfs, uploaded.git_sha1) == (True, git_blob_sha1(big)) and blobs.git_sha1(oid) == git_blob_sha1(big)
    assert blobs.path(oid).read_bytes() == big
    assert not list(storage.tmp.iterdir())
    with pytest.raises(HubError):
        blobs.path("../../etc/passwd")


def test_an_upload_of_stored_content_is_still_checked(storage):
    """Possession is proven by sending the content, even when the server already has it."""
    data = b"secret weights" * 100
    oid = hashlib.sha256(data).hexdigest()
    storage.blobs.put_bytes(data)
    with pytest.raises(HubError):
        storage.blobs.put_stream(io.BytesIO(b"x" * len(data)), oid, len(data))
    assert storage.blobs.path(oid).read_bytes() == data


def test_ownership_markers(storage):
    repo = storage.create_repo("models", "alice/r", private=False, author="alice")
    sha = storage.blobs.put_bytes(b"mine").sha256
    assert not owns(repo.path, sha)
    mark_owned(repo.path, [sha, sha])
    assert owns(repo.path, sha)
    disown(repo.path, [sha])
    assert not owns(repo.path, sha)
    with pytest.raises(HubError):
        owns(repo.path, "../x")


def _age(path, seconds):
    past = time.time() - seconds
    os.utime(path, (past, past))


def test_gc_deletes_only_old_blobs_that_no_repo_owns(storage):
    keep = storage.create_repo("models", "alice/keep", private=False, author="alice")
    kept = commit(storage, keep, "main", [AddFile("k", storage.blobs.put_bytes(b"kept"))], title="t", message="",
                  author="alice").files["k"].sha256
    doomed_repo = storage.create_repo("models", "alice/doomed", private=False, author="alice")
    gone = commit(storage, doomed_repo, "main", [AddFile("g", storage.blobs.put_bytes(b"gone"))], title="t",
                  message="", author="alice").files["g"].sha256
    storage.delete_repo(doomed_repo)
    young = storage.blobs.put_bytes(b"uploaded a moment ago").sha256
    leftover = storage.tmp / "abc.upload"
    leftover.write_bytes(b"partial")
    half_built = storage.tmp / "def.repo"
    (half_built / "commits").mkdir(parents=True)
    _age(half_built, 7200)
    for sha in (kept, gone):
        _age(storage.blobs.path(sha), 7200)
    _age(leftover, 7200)

    dry = collect_garbage(storage.root, dry_run=True)
    assert (dry.blobs_removed, dry.bytes_freed, dry.recent_kept, dry.tmp_removed) == (1, 4, 1, 2)
    assert storage.blobs.has(gone) and leftover.exists()
    report = collect_garbage(storage.root)
    assert (report.blobs_removed, report.bytes_freed, report.recent_kept, report.tmp_removed) == (1, 4, 1, 2)
    assert report.blobs_kept == 2  # alice/keep's file and its .gitattributes (shared with the deleted repo)
    assert not storage.blobs.has(gone) and storage.blobs.has(kept) and storage.blobs.has(young)
    assert not leftover.exists() and not half_built.exists()
    assert storage.resolve(keep, "main").files["k"].sha256 == kept


def test_reuploading_garbage_protects_it_from_a_racing_gc(storage):
    """A dedup hit refreshes the blob's time, so gc's grace period covers the upload in flight."""
    sha = storage.blobs.put_bytes(b"orphan").sha256
    _age(storage.blobs.path(sha), 7200)
    storage.blobs.put_bytes(b"orphan")  # another repo uploads the same content right now
    assert collect_garbage(storage.root).blobs_removed == 0 and storage.blobs.has(sha)
