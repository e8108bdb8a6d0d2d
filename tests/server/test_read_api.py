"""Read endpoints (:mod:`adapterhub.server.read_api`) with the real client: downloads by branch, tag
and sha, snapshots, Range and resumed downloads, error mapping, listing, search and pagination."""

from __future__ import annotations

import hashlib
import os

import httpx2
import pytest
from huggingface_hub import CommitOperationAdd, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.file_download import http_get
from huggingface_hub.utils._pagination import paginate


@pytest.fixture
def versioned_repo(alice, repo_name):
    """Two commits: v1 (tagged) and v2 (on main); a branch 'feature/x' at v1."""
    repo_id = f"alice/{repo_name}"
    alice.create_repo(repo_id)
    v1 = alice.create_commit(
        repo_id,
        [CommitOperationAdd("weights.txt", b"version one"), CommitOperationAdd("sub/dir/notes \xe9.txt", b"n")],
        commit_message="v1",
    )
    alice.create_tag(repo_id, tag="v1.0", revision=v1.oid)
    alice.create_branch(repo_id, branch="feature/x", revision=v1.oid)
    v2 = alice.create_commit(repo_id, [CommitOperationAdd("weights.txt", b"version two")], commit_message="v2")
    return repo_id, v1.oid, v2.oid


def test_download_by_branch_tag_and_sha(hub, versioned_repo, cache_dir):
    repo_id, v1, v2 = versioned_repo

    def read(revision):
        path = hf_hub_download(repo_id, "weights.txt", revision=revision, endpoint=hub.url, cache_dir=cache_dir)
        return open(path, "rb").read()

    assert read("main") == b"version two"
    assert read(None) == b"version two"
    assert read("v1.0") == b"version one"
    assert read("feature/x") == b"version one"
    assert read(v1) == b"version one"
    assert read(v2) == b"version two"
    assert read("refs/tags/v1.0") == b"version one"


def test_head_headers_match_client_expectations(hub, versioned_repo):
    repo_id, _, v2 = versioned_repo
    resp = httpx2.head(f"{hub.url}/{repo_id}/resolve/main/weights.txt")
    assert resp.status_code == 200
    assert resp.headers["X-Repo-Commit"] == v2
    content = b"version two"
    git_sha1 = hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()
    assert resp.headers["ETag"] == f'"{git_sha1}"'
    assert resp.headers["Content-Length"] == str(len(content))
    assert resp.content == b""
    assert not any(h.lower().startswith("x-xet") for h in resp.headers)


def test_snapshot_download_at_tag_and_unicode_path(hub, versioned_repo, cache_dir, tmp_path):
    repo_id, v1, _ = versioned_repo
    folder = snapshot_download(repo_id, revision="v1.0", endpoint=hub.url, cache_dir=cache_dir)
    assert v1 in folder  # snapshots are stored under the commit sha
    assert open(os.path.join(folder, "weights.txt"), "rb").read() == b"version one"
    assert open(os.path.join(folder, "sub", "dir", "notes \xe9.txt"), "rb").read() == b"n"
    local = snapshot_download(repo_id, endpoint=hub.url, cache_dir=cache_dir, local_dir=tmp_path / "out")
    assert (tmp_path / "out" / "weights.txt").read_bytes() == b"version two"
    assert str(local) == str(tmp_path / "out")


def test_range_requests(hub, alice, repo_name):
    repo_id = f"alice/{repo_name}"
    alice.create_repo(repo_id)
    data = bytes(range(256)) * 10
    alice.upload_file(path_or_fileobj=data, path_in_repo="blob.bin", repo_id=repo_id)
    url = f"{hub.url}/{repo_id}/resolve/main/blob.bin"
    part = httpx2.get(url, headers={"Range": "bytes=1000-"})
    assert part.status_code == 206
    assert part.headers["Content-Range"] == f"bytes 1000-{len(data) - 1}/{len(data)}"
    assert part.content == data[1000:]
    middle = httpx2.get(url, headers={"Range": "bytes=10-19"})
    assert (middle.status_code, middle.content) == (206, data[10:20])
    beyond = httpx2.get(url, headers={"Range": f"bytes={len(data) + 5}-"})
    assert beyond.status_code == 416
    assert beyond.headers["Content-Range"] == f"bytes */{len(data)}"


def test_client_resumes_a_partial_download(hub, alice, repo_name, tmp_path):
    """The client's own resume path (used after a dropped connection) sends Range and appends."""
    repo_id = f"alice/{repo_name}"
    alice.create_repo(repo_id)
    data = os.urandom(200_000)
    alice.upload_file(path_or_fileobj=data, path_in_repo="model.safetensors", repo_id=repo_id)
    partial = tmp_path / "model.safetensors.incomplete"
    partial.write_bytes(data[:77_777])
    with partial.open("ab") as fh:
        http_get(
            f"{hub.url}/{repo_id}/resolve/main/model.safetensors",
            fh,
            resume_size=77_777,
            expected_size=len(data),
        )
    assert partial.read_bytes() == data
    assert any('"GET /alice/' in line for line in hub.stderr_text().splitlines())


def test_lfs_file_downloads_by_sha256_etag(hub, alice, repo_name, cache_dir):
    repo_id = f"alice/{repo_name}"
    alice.create_repo(repo_id)
    data = os.urandom(hub.lfs_threshold + 1)
    alice.upload_file(path_or_fileobj=data, path_in_repo="big.bin", repo_id=repo_id)
    head = httpx2.head(f"{hub.url}/{repo_id}/resolve/main/big.bin")
    assert head.headers["ETag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    path = hf_hub_download(repo_id, "big.bin", endpoint=hub.url, cache_dir=cache_dir)
    assert open(path, "rb").read() == data
    # The cache names the blob after the ETag, i.e. the sha256 of the content.
    assert os.path.basename(os.path.realpath(path)) == hashlib.sha256(data).hexdigest()


def test_dataset_repos(hub, alice, repo_name, cache_dir):
    repo_id = f"alice/{repo_name}"
    url = alice.create_repo(repo_id, repo_type="dataset")
    assert url.repo_type == "dataset"
    alice.upload_file(path_or_fileobj=b"a,b\n1,2\n", path_in_repo="data.csv", repo_id=repo_id, repo_type="dataset")
    path = hf_hub_download(repo_id, "data.csv", repo_type="dataset", endpoint=hub.url, cache_dir=cache_dir)
    assert open(path, "rb").read() == b"a,b\n1,2\n"
    assert alice.list_repo_files(repo_id, repo_type="dataset") == [".gitattributes", "data.csv"]
    assert not alice.repo_exists(repo_id)  # a dataset is not a model


def test_error_mapping(hub, alice, anon, repo_name, cache_dir):
    repo_id = f"alice/{repo_name}"
    alice.create_repo(repo_id)
    alice.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=repo_id)
    with pytest.raises(RepositoryNotFoundError):
        anon.model_info("alice/does-not-exist")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("alice/does-not-exist", "x.txt", endpoint=hub.url, cache_dir=cache_dir)
    with pytest.raises(RevisionNotFoundError):
        anon.model_info(repo_id, revision="no-such-branch")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(repo_id, "x.txt", revision="v9", endpoint=hub.url, cache_dir=cache_dir)
    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download(repo_id, "missing.txt", endpoint=hub.url, cache_dir=cache_dir)
    with pytest.raises(EntryNotFoundError):
        list(anon.list_repo_tree(repo_id, path_in_repo="no/such/dir"))
    assert anon.file_exists(repo_id, "x.txt") and not anon.file_exists(repo_id, "y.txt")
    assert not anon.revision_exists(repo_id, "nope")
    # Expected errors are 4xx, which the client does not retry.
    resp = httpx2.get(f"{hub.url}/api/models/{repo_id}/revision/nope")
    assert resp.status_code == 404 and resp.headers["X-Error-Code"] == "RevisionNotFound"
    assert "nope" in resp.headers["X-Error-Message"]


def test_list_models_search_author_filter(hub, alice, bob, anon, repo_name):
    card = b"---\nlibrary_name: peft\ntags: [lora, text-generation]\nbase_model: sshleifer/tiny-gpt2\n---\n"
    alice.create_repo(f"alice/{repo_name}-lora")
    alice.upload_file(path_or_fileobj=card, path_in_repo="README.md", repo_id=f"alice/{repo_name}-lora")
    bob.create_repo(f"bob/{repo_name}-other")
    found = {m.id for m in anon.list_models(search=repo_name)}
    assert found == {f"alice/{repo_name}-lora", f"bob/{repo_name}-other"}
    assert {m.id for m in anon.list_models(search=repo_name, author="bob")} == {f"bob/{repo_name}-other"}
    lora = list(anon.list_models(search=repo_name, filter="lora"))
    assert [m.id for m in lora] == [f"alice/{repo_name}-lora"]
    assert lora[0].library_name == "peft" and "base_model:sshleifer/tiny-gpt2" in lora[0].tags
    assert len(list(anon.list_models(search=repo_name, limit=1))) == 1
    full = list(anon.list_models(search=f"{repo_name}-lora", full=True))
    assert [s.rfilename for s in full[0].siblings] == [".gitattributes", "README.md"]


def test_pagination_follows_link_headers(hub, alice, repo_name):
    repo_id = f"alice/{repo_name}"
    alice.create_repo(repo_id)
    names = [f"f{i:02d}.txt" for i in range(7)]
    alice.create_commit(repo_id, [CommitOperationAdd(n, n.encode()) for n in names], commit_message="many")
    first = httpx2.get(f"{hub.url}/api/models/{repo_id}/tree/main", params={"limit": 3})
    assert len(first.json()) == 3 and 'rel="next"' in first.headers["Link"]
    # The client's own paginator walks the Link chain.
    items = list(paginate(f"{hub.url}/api/models/{repo_id}/tree/main", params={"limit": 3}, headers={}))
    assert [i["path"] for i in items] == [".gitattributes", *names]


def test_last_commits_of_files_and_folders(hub, alice, versioned_repo):
    repo_id, v1, v2 = versioned_repo
    tree = {e.path: e for e in alice.list_repo_tree(repo_id, expand=True)}
    assert tree["weights.txt"].last_commit.oid == v2
    assert tree["sub"].last_commit.oid == v1 and tree["sub"].last_commit.title == "v1"
    assert tree[".gitattributes"].last_commit.title == "initial commit"
    plain = {e.path: e for e in alice.list_repo_tree(repo_id)}
    assert plain["sub"].last_commit is None and plain["weights.txt"].last_commit is None
    info = {e.path: e for e in alice.get_paths_info(repo_id, ["sub", "sub/dir", "weights.txt", "nope"], expand=True)}
    assert set(info) == {"sub", "sub/dir", "weights.txt"} and info["sub/dir"].last_commit.oid == v1


def test_commit_titles_formatted_on_request(hub, alice, repo_name):
    repo_id = f"alice/{repo_name}"
    alice.create_repo(repo_id)
    alice.create_commit(repo_id, [CommitOperationAdd("f", b"1")], commit_message="Add <b>", commit_description="x & y")
    commits = alice.list_repo_commits(repo_id, formatted=True)
    assert (commits[0].formatted_title, commits[0].formatted_message) == ("Add &lt;b&gt;", "x &amp; y")
    assert alice.list_repo_commits(repo_id)[0].formatted_title is None


@pytest.mark.parametrize(
    ("card", "error"),
    [
        ("---\nmodel-index: foo\n---\n", '"model-index" must be an array'),
        ("---\ntags: {a: 1}\n---\n", '"tags" must be a string or an array of strings'),
        ("---\nmodel-index:\n- results: []\n---\n", '"model-index[0].name" is required'),
        ("\n---\nlicense: [mit, 3]\n---\n", '"license" must be a string or an array of strings'),
    ],
)
def test_readme_metadata_is_validated(hub, alice, repo_name, card, error):
    repo_id = f"alice/{repo_name}"
    alice.create_repo(repo_id)
    with pytest.raises(ValueError, match="Invalid metadata in README.md") as err:
        alice.upload_file(path_or_fileobj=card.encode(), path_in_repo="README.md", repo_id=repo_id)
    assert error in str(err.value)
    assert alice.list_repo_files(repo_id) == [".gitattributes"]


def test_a_card_without_metadata_is_a_warning(hub, alice, repo_name):
    repo_id = f"alice/{repo_name}"
    alice.create_repo(repo_id)
    with pytest.warns(UserWarning, match="Empty or missing yaml metadata"):
        alice.upload_file(path_or_fileobj=b"# Just text", path_in_repo="README.md", repo_id=repo_id)
    assert "README.md" in alice.list_repo_files(repo_id)
