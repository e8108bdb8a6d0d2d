"""Writing history (:mod:`adapterhub.server.history`): commits all or nothing on branches and pull
requests, the LFS rule applied to what is committed, super-squash, rewriting history without LFS
objects, and listing them."""

from __future__ import annotations

import pytest

from adapterhub.server.blobs import owns
from adapterhub.server.errors import HubError
from adapterhub.server.history import commit, lfs_objects, rewrite_without, super_squash
from adapterhub.server.objects import AddFile, Commit, DeleteFile, DeleteFolder, TreeEntry


def _files(storage, repo, rev="main"):
    return sorted(storage.resolve(repo, rev).files)


@pytest.fixture
def repo(storage):
    return storage.create_repo("models", "alice/r", private=False, author="alice")


def test_commits_apply_operations_and_keep_history(storage, repo):
    a, b = storage.blobs.put_bytes(b"a"), storage.blobs.put_bytes(b"b")
    first = commit(storage, repo, "main", [AddFile("a.txt", a), AddFile("d/b.txt", b), AddFile("d/c.txt", b)],
                   title="add", message="", author="alice")
    assert _files(storage, repo) == [".gitattributes", "a.txt", "d/b.txt", "d/c.txt"]
    assert owns(repo.path, a.sha256) and owns(repo.path, b.sha256)
    second = commit(storage, repo, "main", [DeleteFile("a.txt"), DeleteFolder("d")], title="rm", message="",
                    author="alice", parent_commit=first.id)
    assert _files(storage, repo) == [".gitattributes"]
    assert _files(storage, repo, first.id) == [".gitattributes", "a.txt", "d/b.txt", "d/c.txt"]
    assert [c.title for c in storage.history(repo, second)] == ["rm", "add", "initial commit"]
    assert storage.read_commit(repo, first.id) == first


def test_deleting_a_folder_by_its_name_without_a_slash(storage, repo):
    """``CommitOperationDelete("1")`` is sent as a file deletion; the Hub deletes the folder."""
    data = storage.blobs.put_bytes(b"d")
    commit(storage, repo, "main", [AddFile("1/a", data), AddFile("1/b", data), AddFile("2/c", data)], title="t",
           message="", author="alice")
    commit(storage, repo, "main", [DeleteFile("1")], title="rm", message="", author="alice")
    assert _files(storage, repo) == [".gitattributes", "2/c"]


@pytest.mark.parametrize(
    ("branch", "ops", "parent", "status"),
    [
        ("main", [DeleteFile("missing.txt")], None, 404),
        ("main", [DeleteFolder("missing")], None, 404),
        ("main", "missing-blob", None, 422),
        ("main", [], "0" * 40, 412),
        ("v1", [], None, 400),  # a tag
        ("nope", [], None, 404),
        ("refs/pr/1", [], None, 404),
    ],
)
def test_a_failed_commit_changes_nothing(storage, repo, branch, ops, parent, status):
    storage.set_ref(repo, "tag", "v1", "main")
    if ops == "missing-blob":
        ops = [AddFile("x", TreeEntry(sha256="ee" * 32, size=1, git_sha1=None, lfs=True))]
    before = storage.refs(repo)
    commits_before = sorted((repo.path / "commits").iterdir())
    with pytest.raises(HubError) as err:
        commit(storage, repo, branch, ops, title="t", message="", author="alice", parent_commit=parent)
    assert err.value.status == status
    assert storage.refs(repo) == before and sorted((repo.path / "commits").iterdir()) == commits_before


def test_a_stale_parent_commit_gets_the_hubs_412(storage, repo):
    head = storage.resolve(repo, "main").id
    commit(storage, repo, "main", [AddFile("a", storage.blobs.put_bytes(b"a"))], title="t", message="", author="a")
    with pytest.raises(HubError) as err:
        commit(storage, repo, "main", [], title="t", message="", author="a", parent_commit=head)
    assert err.value.status == 412
    assert "The branch was updated since you opened this page. Please refresh and try again." in err.value.message


def test_what_is_committed_follows_the_lfs_rule(storage, repo):
    small = storage.blobs.put_bytes(b"weights")
    new = commit(storage, repo, "main", [AddFile("w.safetensors", small), AddFile("notes.txt", small),
                                         AddFile("empty.bin", storage.blobs.put_bytes(b""))],
                 title="t", message="", author="alice", lfs_threshold=5)
    assert new.files["w.safetensors"].lfs and new.files["w.safetensors"].git_sha1 == small.git_sha1
    assert new.files["notes.txt"].lfs  # 7 bytes >= the threshold of 5
    assert not new.files["empty.bin"].lfs
    # The .gitattributes of the commit itself counts: png becomes LFS, safetensors no more.
    attrs = storage.blobs.put_bytes(b"*.png filter=lfs diff=lfs merge=lfs -text\n")
    png = commit(storage, repo, "main", [AddFile(".gitattributes", attrs), AddFile("a.png", small),
                                         AddFile("b.safetensors", small)], title="t", message="", author="alice")
    assert png.files["a.png"].lfs and not png.files["b.safetensors"].lfs
    assert png.files["w.safetensors"].lfs  # files already there keep how they are stored


def test_commit_ids_hash_contents_not_storage(storage):
    """The same content gives the same commit id whether or not it is stored through LFS."""
    entry = storage.blobs.put_bytes(b"x")
    plain = Commit.create("p", "t", "m", "a", "2020", {"f": entry})
    lfs = Commit.create("p", "t", "m", "a", "2021", {"f": entry.as_lfs(True)})
    assert plain.id == lfs.id
    assert Commit.create("p", "t", "m", "a", "2020", {"g": entry}).id != plain.id


def test_super_squash_keeps_the_files_and_drops_the_history(storage, repo):
    storage.set_ref(repo, "branch", "dev", "main")
    for i in range(3):
        commit(storage, repo, "main", [AddFile("f", storage.blobs.put_bytes(b"%d" % i))], title=f"c{i}", message="",
               author="alice")
    before = storage.resolve(repo, "main")
    squashed = super_squash(storage, repo, "main", message="Squash", author="alice")
    assert squashed.parent is None and squashed.files == before.files and squashed.title == "Squash"
    assert [c.id for c in storage.history(repo, storage.resolve(repo, "main"))] == [squashed.id]
    assert len(list(storage.history(repo, storage.resolve(repo, "dev")))) == 1  # dev was the initial commit
    with pytest.raises(HubError) as tag:
        storage.set_ref(repo, "tag", "v1", "main")
        super_squash(storage, repo, "v1", message="x", author="alice")
    assert tag.value.status == 400


def test_rewriting_history_without_lfs_objects(storage, repo):
    big, other = storage.blobs.put_bytes(b"big weights"), storage.blobs.put_bytes(b"text")
    first = commit(storage, repo, "main", [AddFile("a.bin", big), AddFile("t.txt", other)], title="1", message="",
                   author="alice")
    storage.set_ref(repo, "branch", "dev", "main")
    storage.set_ref(repo, "tag", "v1", "main")
    commit(storage, repo, "main", [AddFile("u.txt", other)], title="2", message="", author="alice")
    initial = list(storage.history(repo, first))[-1]
    listed = lfs_objects(storage, repo)
    assert [(o.filename, o.ref, o.sha256, o.size) for o in listed] == [("a.bin", "refs/heads/main", big.sha256, 11)]
    assert listed[0].pushed_at == first.date
    rewritten = rewrite_without(storage, repo, {big.sha256})
    assert rewritten == 2  # the commit adding a.bin, and the one after it on main
    for rev in ("main", "dev", "v1"):
        assert all("a.bin" not in c.files for c in storage.history(repo, storage.resolve(repo, rev)))
    assert storage.resolve(repo, "dev").id != first.id and "t.txt" in storage.resolve(repo, "dev").files
    assert list(storage.history(repo, storage.resolve(repo, "dev")))[-1].id == initial.id  # untouched root
    assert lfs_objects(storage, repo) == []
