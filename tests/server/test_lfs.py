"""git-LFS (:mod:`adapterhub.server.lfs`) and blob ownership through the real client: the batch
endpoint answers per repo, and neither a commit, the batch endpoint nor a download can reach a
blob of another repo; LFS files are listed and deleted for good; Xet clients get the fix."""

from __future__ import annotations

import base64
import hashlib
import json
import os

import httpx2
import pytest
from huggingface_hub import CommitOperationAdd, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, RevisionNotFoundError

pytestmark = pytest.mark.usefixtures("no_xet")


def _auth(hub, user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {hub.users[user]}"}


def _batch(hub, repo_id: str, user: str, oid: str, size: int) -> dict:
    resp = httpx2.post(f"{hub.url}/{repo_id}.git/info/lfs/objects/batch", headers=_auth(hub, user),
                       json={"operation": "upload", "transfers": ["basic"], "objects": [{"oid": oid, "size": size}]})
    assert resp.status_code == 200, resp.text
    return resp.json()["objects"][0]


def _commit_lines(hub, repo_id: str, user: str, lines: list[dict], query: str = "") -> httpx2.Response:
    body = "\n".join(json.dumps(line) for line in [{"key": "header", "value": {"summary": "probe"}}, *lines])
    return httpx2.post(f"{hub.url}/api/models/{repo_id}/commit/main{query}", content=body.encode(),
                       headers={**_auth(hub, user), "Content-Type": "application/x-ndjson"})


def test_another_repos_blob_cannot_be_reached(hub, alice, bob, repo_name, cache_dir):
    """bob knows the sha256 and size of a file in alice's private repo (a lock file or a manifest
    publishes them). Neither a commit, the LFS batch endpoint nor a download gets him its content."""
    secret = os.urandom(hub.lfs_threshold + 100)
    oid, size = hashlib.sha256(secret).hexdigest(), len(secret)
    private = f"alice/{repo_name}-private"
    alice.create_repo(private, private=True)
    info = alice.upload_file(path_or_fileobj=secret, path_in_repo="adapter_model.safetensors", repo_id=private)
    assert alice.get_paths_info(private, ["adapter_model.safetensors"])[0].lfs.sha256 == oid
    public = f"alice/{repo_name}-public"
    alice.create_repo(public)
    mine = f"bob/{repo_name}"
    bob.create_repo(mine)
    before = bob.model_info(mine).sha

    # 1. A commit naming the blob, into bob's own repo and as a pull request on alice's public one.
    line = {"key": "lfsFile", "value": {"path": "stolen.safetensors", "algo": "sha256", "oid": oid, "size": size}}
    own = _commit_lines(hub, mine, "bob", [line])
    assert own.status_code == 422 and "never uploaded to this repo" in own.json()["error"]
    via_pr = _commit_lines(hub, public, "bob", [line], query="?create_pr=1")
    assert via_pr.status_code == 422
    assert bob.model_info(mine).sha == before and list(bob.get_repo_discussions(public)) == []
    # 2. The batch endpoint on bob's repo asks for the content, exactly as for content nobody has.
    unknown = hashlib.sha256(b"nobody has this").hexdigest()
    known, fresh = _batch(hub, mine, "bob", oid, size), _batch(hub, mine, "bob", unknown, size)
    assert set(known) == set(fresh) == {"oid", "size", "actions"}
    assert set(known["actions"]) == set(fresh["actions"]) == {"upload", "verify"}
    # ...and verifying without uploading fails.
    verify = httpx2.post(known["actions"]["verify"]["href"], json={"oid": oid, "size": size}, headers=_auth(hub, "bob"))
    assert verify.status_code == 422
    # 3. Downloads through bob's repo: alice's commit id is no revision of his, the path is no file.
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(mine, "adapter_model.safetensors", revision=info.oid, endpoint=hub.url,
                        token=hub.users["bob"], cache_dir=cache_dir)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(mine, "adapter_model.safetensors", endpoint=hub.url, token=hub.users["bob"],
                        cache_dir=cache_dir)
    assert [f for f in bob.list_repo_files(mine)] == [".gitattributes"]

    # Sending the content itself is what makes it his: then it works, as it should.
    bob.upload_file(path_or_fileobj=secret, path_in_repo="mine.safetensors", repo_id=mine)
    assert _batch(hub, mine, "bob", oid, size) == {"oid": oid, "size": size}  # now present: nothing to upload
    assert _commit_lines(hub, mine, "bob", [line]).status_code == 200


def test_inline_content_and_history_are_the_repos_own(hub, alice, repo_name):
    """Content sent inline belongs to the repo; so does everything in its history (copies work)."""
    repo_id = f"alice/{repo_name}"
    alice.create_repo(repo_id)
    data = b"inline weights"
    oid = hashlib.sha256(data).hexdigest()
    resp = _commit_lines(hub, repo_id, "alice", [
        {"key": "file", "value": {"path": "a.bin", "content": base64.b64encode(data).decode(), "encoding": "base64"}}])
    assert resp.status_code == 200
    entry = alice.get_paths_info(repo_id, ["a.bin"])[0]
    assert entry.lfs is not None and entry.lfs.sha256 == oid  # *.bin is an LFS file by the Hub's rule
    copy = {"key": "lfsFile", "value": {"path": "copy/a.bin", "algo": "sha256", "oid": oid}}
    assert _commit_lines(hub, repo_id, "alice", [copy]).status_code == 200
    assert sorted(alice.list_repo_files(repo_id)) == [".gitattributes", "a.bin", "copy/a.bin"]


def test_listing_and_permanently_deleting_lfs_files(hub, alice, bob, repo_name, cache_dir):
    repo_id = f"alice/{repo_name}"
    alice.create_repo(repo_id)
    alice.upload_file(path_or_fileobj=b"old weights", path_in_repo="w.bin", repo_id=repo_id)
    alice.upload_file(path_or_fileobj=b"new weights", path_in_repo="w.bin", repo_id=repo_id)
    alice.upload_file(path_or_fileobj=b"notes", path_in_repo="notes.txt", repo_id=repo_id)
    files = {f.file_oid: f for f in alice.list_lfs_files(repo_id)}
    old, new = hashlib.sha256(b"old weights").hexdigest(), hashlib.sha256(b"new weights").hexdigest()
    assert set(files) == {old, new} and files[old].filename == "w.bin" and files[old].ref == "refs/heads/main"
    with pytest.raises(Exception):
        list(bob.list_lfs_files(repo_id))  # not his repo
    alice.permanently_delete_lfs_files(repo_id, [files[old]])
    assert {f.file_oid for f in alice.list_lfs_files(repo_id)} == {new}
    assert all(old not in {e.lfs.sha256 for e in alice.list_repo_tree(repo_id, revision=c.commit_id) if
                           getattr(e, "lfs", None)} for c in alice.list_repo_commits(repo_id))
    assert not (hub.root / "blobs" / old[:2] / old).exists()  # no other repo had it: gone at once
    path = hf_hub_download(repo_id, "w.bin", endpoint=hub.url, cache_dir=cache_dir)
    assert open(path, "rb").read() == b"new weights"


def test_commits_keep_the_hubs_lfs_rule(hub, alice, repo_name):
    """.gitattributes patterns and the size threshold decide which files are LFS files, whichever
    way they were sent; preupload says so, and honours .gitignore."""
    repo_id = f"alice/{repo_name}"
    alice.create_repo(repo_id)
    alice.upload_file(path_or_fileobj=b"*.tmp\n", path_in_repo=".gitignore", repo_id=repo_id)
    resp = httpx2.post(f"{hub.url}/api/models/{repo_id}/preupload/main", headers=_auth(hub, "alice"), json={
        "files": [{"path": "a.safetensors", "size": 10, "sample": ""}, {"path": "a.txt", "size": 10, "sample": ""},
                  {"path": "big.txt", "size": hub.lfs_threshold, "sample": ""},
                  {"path": "x.tmp", "size": 1, "sample": ""}]})
    modes = {f["path"]: (f["uploadMode"], f["shouldIgnore"]) for f in resp.json()["files"]}
    assert modes == {"a.safetensors": ("lfs", False), "a.txt": ("regular", False), "big.txt": ("lfs", False),
                     "x.tmp": ("regular", True)}
    with_ignore = httpx2.post(f"{hub.url}/api/models/{repo_id}/preupload/main", headers=_auth(hub, "alice"),
                              json={"files": [{"path": "x.tmp", "size": 1, "sample": ""}], "gitIgnore": "*.log\n"})
    assert with_ignore.json()["files"][0]["shouldIgnore"] is False  # the .gitignore being committed wins
    alice.create_commit(repo_id, [CommitOperationAdd("model.safetensors", b"w"), CommitOperationAdd("a.txt", b"t")],
                        commit_message="files")
    lfs = {e.path: e.lfs is not None for e in alice.list_repo_tree(repo_id)}
    assert lfs["model.safetensors"] and not lfs["a.txt"] and not lfs[".gitattributes"]
