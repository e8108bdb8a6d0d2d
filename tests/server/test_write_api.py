"""Write endpoints (:mod:`adapterhub.server.write_api`) with the real client: repos, regular and
git-LFS uploads (HF_HUB_DISABLE_XET=1), commits, no-op re-uploads, bad paths, branches and tags."""

from __future__ import annotations

import base64
import hashlib
import json
import os

import httpx2
import pytest
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

pytestmark = pytest.mark.usefixtures("no_xet")


def test_lfs_upload_round_trip(hub, alice, repo_name, tmp_path, cache_dir):
    repo_id = f"alice/{repo_name}"
    alice.create_repo(repo_id)
    folder = tmp_path / "adapter"
    folder.mkdir()
    big = os.urandom(hub.lfs_threshold * 3 + 17)
    (folder / "adapter_model.safetensors").write_bytes(big)
    (folder / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    info = alice.upload_folder(repo_id=repo_id, folder_path=folder)

    files = {f.path: f for f in alice.list_repo_tree(repo_id, revision=info.oid)}
    sha256 = hashlib.sha256(big).hexdigest()
    assert files["adapter_model.safetensors"].lfs is not None
    assert files["adapter_model.safetensors"].lfs.sha256 == sha256
    assert files["adapter_model.safetensors"].size == len(big)
    assert files["adapter_config.json"].lfs is None
    # The server stored the bytes content-addressed, and the log shows the git-LFS path was taken.
    assert (hub.root / "blobs" / sha256[:2] / sha256).read_bytes() == big
    log = hub.stderr_text()
    assert f"/{repo_id}.git/info/lfs/objects/batch" in log
    assert f"PUT /_lfs/upload/models/{repo_id.lower()}/{sha256}" in log
    assert "sig=" not in log  # signed upload URLs are not logged

    path = hf_hub_download(repo_id, "adapter_model.safetensors", endpoint=hub.url, cache_dir=cache_dir)
    assert open(path, "rb").read() == big

    # Re-uploading the same folder makes no commit: preupload's oids let the client skip every file.
    again = alice.upload_folder(repo_id=repo_id, folder_path=folder)
    assert again.oid == info.oid
    assert len(alice.list_repo_commits(repo_id)) == 2  # initial + upload


def test_regular_commit_with_deletes_and_parent_check(hub, alice, repo_name):
    repo_id = f"alice/{repo_name}"
    alice.create_repo(repo_id)
    first = alice.create_commit(
        repo_id,
        [CommitOperationAdd("a.txt", b"a"), CommitOperationAdd("dir/b.txt", b"b"), CommitOperationAdd("dir/c.txt", b"c")],
        commit_message="add",
    )
    second = alice.create_commit(
        repo_id,
        [CommitOperationDelete("a.txt"), CommitOperationDelete("dir/")],
        commit_message="delete",
        parent_commit=first.oid,
    )
    assert alice.list_repo_files(repo_id) == [".gitattributes"]
    assert sorted(alice.list_repo_files(repo_id, revision=first.oid)) == [
        ".gitattributes", "a.txt", "dir/b.txt", "dir/c.txt"
    ]
    commits = alice.list_repo_commits(repo_id)
    assert [c.commit_id for c in commits[:2]] == [second.oid, first.oid]
    assert commits[0].title == "delete" and commits[0].authors == ["alice"]

    with pytest.raises(HfHubHTTPError) as stale:
        alice.create_commit(repo_id, [CommitOperationAdd("x", b"x")], commit_message="x", parent_commit=first.oid)
    assert stale.value.response.status_code == 412
    with pytest.raises(EntryNotFoundError):
        alice.create_commit(repo_id, [CommitOperationDelete("missing.txt")], commit_message="rm")


@pytest.mark.parametrize(
    "bad_path", ["/etc/passwd", "a/../../b", "..", "a//b", "dir/", "./a", "..\\ddd", "C:\\x", ".git/config"]
)
def test_commit_refuses_unsafe_paths(hub, alice, repo_name, bad_path):
    """The client would refuse some of these itself, so the NDJSON is posted directly; 422 as on the Hub."""
    repo_id = f"alice/{repo_name}"
    alice.create_repo(repo_id)
    lines = [
        {"key": "header", "value": {"summary": "evil"}},
        {"key": "file", "value": {"path": bad_path, "content": base64.b64encode(b"x").decode(), "encoding": "base64"}},
    ]
    resp = httpx2.post(
        f"{hub.url}/api/models/{repo_id}/commit/main",
        content="\n".join(json.dumps(line) for line in lines).encode(),
        headers={"Authorization": f"Bearer {hub.users['alice']}", "Content-Type": "application/x-ndjson"},
    )
    assert resp.status_code == 422, resp.text
    assert alice.list_repo_files(repo_id) == [".gitattributes"]


def test_lfs_upload_url_checks_signature_and_content(hub, alice, repo_name):
    repo_id = f"alice/{repo_name}"
    alice.create_repo(repo_id)
    data = b"z" * 1000
    oid = hashlib.sha256(data).hexdigest()
    batch = httpx2.post(
        f"{hub.url}/{repo_id}.git/info/lfs/objects/batch",
        json={"operation": "upload", "transfers": ["basic"], "objects": [{"oid": oid, "size": len(data)}]},
        headers={"Authorization": f"Bearer {hub.users['alice']}"},
    ).json()
    href = batch["objects"][0]["actions"]["upload"]["href"]
    assert httpx2.put(href.replace("sig=", "sig=0"), content=data).status_code == 403
    assert httpx2.put(href, content=b"y" * 1000).status_code == 400  # wrong bytes for that oid
    assert not (hub.root / "blobs" / oid[:2] / oid).exists()
    assert not list((hub.root / "tmp").glob("*.upload"))
    assert httpx2.put(href, content=data).status_code == 200
    assert (hub.root / "blobs" / oid[:2] / oid).read_bytes() == data
    # Uploading LFS objects needs a token (any user may upload for a pull request).
    anonymous = httpx2.post(
        f"{hub.url}/{repo_id}.git/info/lfs/objects/batch",
        json={"operation": "upload", "objects": [{"oid": oid, "size": len(data)}]},
    )
    assert anonymous.status_code == 401
    # The signature binds the URL to this repo: the same upload to another repo's URL is refused.
    elsewhere = href.replace(f"/models/{repo_id.lower()}/", "/models/alice/elsewhere/")
    assert httpx2.put(elsewhere, content=data).status_code == 403


def test_create_repo_conflict_and_delete(hub, alice, repo_name):
    url = alice.create_repo(repo_name)  # no namespace: the token's user
    assert url.repo_id == f"alice/{repo_name}"
    with pytest.raises(HfHubHTTPError) as conflict:
        alice.create_repo(repo_name)
    assert conflict.value.response.status_code == 409
    assert conflict.value.response.json()["url"].endswith(f"/alice/{repo_name}")
    assert alice.create_repo(repo_name, exist_ok=True).repo_id == f"alice/{repo_name}"
    alice.delete_repo(f"alice/{repo_name}")
    assert not alice.repo_exists(f"alice/{repo_name}")
    with pytest.raises(RepositoryNotFoundError):
        alice.delete_repo(f"alice/{repo_name}")


def test_tags_branches_and_refs(hub, alice, repo_name):
    repo_id = f"alice/{repo_name}"
    alice.create_repo(repo_id)
    one = alice.create_commit(repo_id, [CommitOperationAdd("f", b"1")], commit_message="one")
    alice.create_tag(repo_id, tag="v1.0.0", tag_message="first release")
    two = alice.create_commit(repo_id, [CommitOperationAdd("f", b"2")], commit_message="two")
    alice.create_tag(repo_id, tag="v2.0.0", revision=two.oid)
    alice.create_branch(repo_id, branch="dev", revision=one.oid)
    with pytest.raises(HfHubHTTPError) as dup:
        alice.create_tag(repo_id, tag="v1.0.0")
    assert dup.value.response.status_code == 409
    alice.create_tag(repo_id, tag="v1.0.0", exist_ok=True)

    refs = alice.list_repo_refs(repo_id)
    assert {t.name: t.target_commit for t in refs.tags} == {"v1.0.0": one.oid, "v2.0.0": two.oid}
    assert {b.name: b.target_commit for b in refs.branches} == {"main": two.oid, "dev": one.oid}
    assert refs.converts == []
    assert alice.model_info(repo_id, revision="v1.0.0").sha == one.oid

    alice.delete_tag(repo_id, tag="v2.0.0")
    alice.delete_branch(repo_id, branch="dev")
    refs = alice.list_repo_refs(repo_id)
    assert [t.name for t in refs.tags] == ["v1.0.0"] and [b.name for b in refs.branches] == ["main"]
    with pytest.raises(RevisionNotFoundError):
        alice.model_info(repo_id, revision="dev")


def test_repo_ids_are_case_insensitive(hub, alice, anon, repo_name, cache_dir):
    repo_id = f"alice/{repo_name}-CaSe"
    alice.create_repo(repo_id)
    alice.create_commit(repo_id.lower(), [CommitOperationAdd("f.txt", b"x")], commit_message="lower")
    assert anon.model_info(repo_id.upper()).id == repo_id  # the case it was created with
    with pytest.raises(HfHubHTTPError) as same:
        alice.create_repo(repo_id.lower())
    assert same.value.response.status_code == 409
    assert same.value.response.json()["url"].endswith(repo_id)
    path = hf_hub_download(repo_id.swapcase(), "f.txt", endpoint=hub.url, cache_dir=cache_dir)
    assert open(path, "rb").read() == b"x"


def test_move_keeps_the_old_id_working_and_checks_both_namespaces(hub, alice, bob, repo_name, cache_dir):
    old, new = f"alice/{repo_name}", f"alice/{repo_name}-renamed"
    alice.create_repo(old, private=True)
    alice.upload_file(path_or_fileobj=b"content", path_in_repo="file.txt", repo_id=old)
    alice.move_repo(old, new)
    assert alice.model_info(new).id == new and alice.model_info(old).id == new
    path = hf_hub_download(old, "file.txt", endpoint=hub.url, token=hub.users["alice"], cache_dir=cache_dir)
    assert open(path, "rb").read() == b"content"
    with pytest.raises(RepositoryNotFoundError):
        bob.model_info(old)  # still private under either name
    with pytest.raises(HfHubHTTPError) as foreign:
        alice.move_repo(new, f"bob/{repo_name}")
    assert foreign.value.response.status_code == 403
    alice.create_repo(f"alice/{repo_name}-taken")
    with pytest.raises(HfHubHTTPError, match=r"A model repository called .* already exists"):
        alice.move_repo(new, f"alice/{repo_name}-taken")
    alice.move_repo(new, f"team/{repo_name}")  # alice administers the team
    assert alice.model_info(f"team/{repo_name}").private


def test_super_squash_and_duplicate(hub, alice, bob, repo_name):
    repo_id = f"alice/{repo_name}"
    alice.create_repo(repo_id)
    for i in range(3):
        alice.upload_file(path_or_fileobj=b"%d" % i, path_in_repo="f.txt", repo_id=repo_id)
    alice.create_branch(repo_id, branch="old")
    files = alice.list_repo_files(repo_id)
    with pytest.raises(HfHubHTTPError) as not_a_writer:
        bob.super_squash_history(repo_id)
    assert not_a_writer.value.response.status_code == 403
    alice.super_squash_history(repo_id, commit_message="Squash it")
    commits = alice.list_repo_commits(repo_id)
    assert [c.title for c in commits] == ["Squash it"] and alice.list_repo_files(repo_id) == files
    assert len(alice.list_repo_commits(repo_id, revision="old")) == 4
    copy = bob.duplicate_repo(repo_id, f"bob/{repo_name}-copy", visibility="private")
    assert copy.repo_id == f"bob/{repo_name}-copy" and bob.model_info(copy.repo_id).private
    assert bob.list_repo_files(copy.repo_id) == files
    with pytest.raises(RevisionNotFoundError):
        bob.model_info(copy.repo_id, revision="refs/pr/1")


def test_settings_refuse_what_they_do_not_apply(hub, alice, repo_name):
    repo_id = f"alice/{repo_name}"
    alice.create_repo(repo_id)
    headers = {"Authorization": f"Bearer {hub.users['alice']}"}
    for body in ({"gated": "sometimes"}, {"visibility": "internal"}, {"xetEnabled": True}):
        resp = httpx2.put(f"{hub.url}/api/models/{repo_id}/settings", json=body, headers=headers)
        assert resp.status_code == 400, body
    alice.update_repo_settings(repo_id, gated="auto", private=True)
    info = alice.model_info(repo_id)
    assert (info.gated, info.private) == ("auto", True)


def test_revisions_may_be_abbreviated_and_tags_checked_after_revisions(hub, alice, repo_name):
    repo_id = f"alice/{repo_name}"
    alice.create_repo(repo_id)
    info = alice.upload_file(path_or_fileobj=b"1", path_in_repo="f", repo_id=repo_id)
    alice.create_tag(repo_id, tag="short", revision=info.oid[:7])
    assert alice.model_info(repo_id, revision="short").sha == info.oid
    assert alice.model_info(repo_id, revision=info.oid[:10]).sha == info.oid
    with pytest.raises(RevisionNotFoundError):
        alice.create_tag(repo_id, tag="bad tag", revision="no-such-revision")
    with pytest.raises(HfHubHTTPError) as bad:
        alice.create_tag(repo_id, tag="bad tag")
    assert bad.value.response.status_code == 400
    with pytest.raises(HfHubHTTPError, match="Reference refs/heads/main already exists"):
        alice.create_branch(repo_id, branch="main")
    with pytest.raises(HfHubHTTPError, match="Cannot delete refs/heads/main"):
        alice.delete_branch(repo_id, branch="main")
    with pytest.raises(HfHubHTTPError, match="Invalid rev id"):
        alice.delete_branch(repo_id, branch="short")  # a tag, not a branch
