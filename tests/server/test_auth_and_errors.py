"""Auth (public, private, wrong namespace), error mapping, refs, listing and search."""

from __future__ import annotations

import httpx2
import pytest
from huggingface_hub import CommitOperationAdd, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils._pagination import paginate


def test_private_repo_needs_its_owners_token(hub, alice, bob, anon, repo_name, cache_dir):
    repo_id = f"alice/{repo_name}"
    alice.create_repo(repo_id, private=True)
    alice.upload_file(path_or_fileobj=b"secret", path_in_repo="s.txt", repo_id=repo_id)
    assert alice.model_info(repo_id).private is True
    for api in (bob, anon):
        with pytest.raises(RepositoryNotFoundError):
            api.model_info(repo_id)
        assert not api.repo_exists(repo_id)
    for token in (hub.users["bob"], False, "not-a-token"):
        with pytest.raises(RepositoryNotFoundError):
            hf_hub_download(repo_id, "s.txt", endpoint=hub.url, token=token, cache_dir=cache_dir)
    path = hf_hub_download(repo_id, "s.txt", endpoint=hub.url, token=hub.users["alice"], cache_dir=cache_dir)
    assert open(path, "rb").read() == b"secret"
    assert repo_id not in [m.id for m in anon.list_models(author="alice")]
    assert repo_id in [m.id for m in alice.list_models(author="alice")]
    # Flipping visibility makes it public.
    alice.update_repo_settings(repo_id, private=False)
    assert anon.model_info(repo_id).private is False


def test_write_needs_a_token_for_the_namespace(hub, alice, bob, anon, repo_name):
    repo_id = f"alice/{repo_name}"
    alice.create_repo(repo_id)
    with pytest.raises(HfHubHTTPError) as no_token:
        anon.upload_file(path_or_fileobj=b"x", path_in_repo="x", repo_id=repo_id)
    assert no_token.value.response.status_code == 401
    with pytest.raises(HfHubHTTPError) as wrong_ns:
        bob.upload_file(path_or_fileobj=b"x", path_in_repo="x", repo_id=repo_id)
    assert wrong_ns.value.response.status_code == 403
    with pytest.raises(HfHubHTTPError) as create_elsewhere:
        bob.create_repo(f"alice/{repo_name}-bob")
    assert create_elsewhere.value.response.status_code == 403
    with pytest.raises(HfHubHTTPError) as bad_token:
        HfApiWith(hub, "nope").whoami()
    assert bad_token.value.response.status_code == 401
    assert alice.list_repo_files(repo_id) == []
    assert bob.whoami()["name"] == "bob"
    log = hub.stderr_text()
    assert "/api/whoami-v2" in log  # the access log is on...
    assert not any(token in log for token in hub.users.values())  # ...and never shows a token


def HfApiWith(hub, token):  # noqa: N802 (reads like the class it builds)
    from huggingface_hub import HfApi

    return HfApi(endpoint=hub.url, token=token)


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
    assert [s.rfilename for s in full[0].siblings] == ["README.md"]


def test_pagination_follows_link_headers(hub, alice, repo_name):
    repo_id = f"alice/{repo_name}"
    alice.create_repo(repo_id)
    names = [f"f{i:02d}.txt" for i in range(7)]
    alice.create_commit(repo_id, [CommitOperationAdd(n, n.encode()) for n in names], commit_message="many")
    first = httpx2.get(f"{hub.url}/api/models/{repo_id}/tree/main", params={"limit": 3})
    assert len(first.json()) == 3 and 'rel="next"' in first.headers["Link"]
    # The client's own paginator walks the Link chain.
    items = list(paginate(f"{hub.url}/api/models/{repo_id}/tree/main", params={"limit": 3}, headers={}))
    assert [i["path"] for i in items] == names
