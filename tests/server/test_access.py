"""Gated repos and access requests, and likes (:mod:`adapterhub.server.access`) through the real
client: a gated repo shows its metadata but serves its files only to members and accepted users."""

from __future__ import annotations

import httpx2
import pytest
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

pytestmark = pytest.mark.usefixtures("no_xet")


def _ask(hub, repo_id: str, token: str) -> httpx2.Response:
    return httpx2.post(f"{hub.url}/{repo_id}/ask-access", headers={"Authorization": f"Bearer {token}"})


@pytest.mark.usefixtures("hub_is_the_endpoint")
def test_a_manually_gated_repo(hub, alice, bob, carol, anon, repo_name, cache_dir):
    repo_id = f"alice/{repo_name}"
    alice.create_repo(repo_id)
    alice.upload_file(path_or_fileobj=b"weights", path_in_repo="w.bin", repo_id=repo_id)
    alice.update_repo_settings(repo_id, gated="manual")
    assert anon.model_info(repo_id).gated == "manual"  # metadata stays visible
    assert "w.bin" in bob.list_repo_files(repo_id)
    for token in (hub.users["bob"], False):
        with pytest.raises(GatedRepoError, match=r"Access to model .* is restricted and you are not in the authorized"):
            hf_hub_download(repo_id, "w.bin", endpoint=hub.url, token=token, cache_dir=cache_dir)
    with pytest.raises(GatedRepoError):
        bob.auth_check(repo_id)
    alice.auth_check(repo_id)  # the owner always has access

    assert _ask(hub, repo_id, hub.users["bob"]).json() == {"status": "pending"}
    assert [r.username for r in alice.list_pending_access_requests(repo_id)] == ["bob"]
    with pytest.raises(HfHubHTTPError) as not_admin:
        list(bob.list_pending_access_requests(repo_id))
    assert not_admin.value.response.status_code == 403
    with pytest.raises(GatedRepoError):
        hf_hub_download(repo_id, "w.bin", endpoint=hub.url, token=hub.users["bob"], cache_dir=cache_dir)
    alice.accept_access_request(repo_id, "bob")
    path = hf_hub_download(repo_id, "w.bin", endpoint=hub.url, token=hub.users["bob"], cache_dir=cache_dir)
    assert open(path, "rb").read() == b"weights"
    bob.auth_check(repo_id)

    request = list(alice.list_accepted_access_requests(repo_id))[0]
    if hasattr(request, "request_id"):  # huggingface_hub releases that reject by request id
        alice.reject_access_request(repo_id, request_id=request.request_id, rejection_reason="No longer")
    else:  # huggingface_hub 2.0 rejects by user name
        alice.reject_access_request(repo_id, "bob", rejection_reason="No longer")
    with pytest.raises(GatedRepoError):
        bob.auth_check(repo_id)
    with pytest.raises(HfHubHTTPError):  # already rejected
        alice.reject_access_request(repo_id, "bob", rejection_reason="again")
    alice.grant_access(repo_id, "carol")
    carol.auth_check(repo_id)
    with pytest.raises(HfHubHTTPError) as unknown:
        alice.grant_access(repo_id, "nobody")
    assert unknown.value.response.status_code == 404

    alice.update_repo_settings(repo_id, gated=False)
    hf_hub_download(repo_id, "w.bin", endpoint=hub.url, token=False, cache_dir=cache_dir, force_download=True)


@pytest.mark.usefixtures("hub_is_the_endpoint")
def test_auto_gating_accepts_at_once_and_settings_are_checked(hub, alice, bob, repo_name):
    repo_id = f"alice/{repo_name}"
    alice.create_repo(repo_id, repo_type="dataset")
    alice.update_repo_settings(repo_id, repo_type="dataset", gated="auto")
    assert alice.dataset_info(repo_id).gated == "auto"
    with pytest.raises(GatedRepoError, match="Access to dataset"):
        bob.auth_check(repo_id, repo_type="dataset")
    assert _ask(hub, f"datasets/{repo_id}", hub.users["bob"]).json() == {"status": "accepted"}
    bob.auth_check(repo_id, repo_type="dataset")

    resp = httpx2.put(f"{hub.url}/api/datasets/{repo_id}/settings", json={"gated": "sometimes"},
                      headers={"Authorization": f"Bearer {hub.users['alice']}"})
    assert resp.status_code == 400 and "gated" in resp.headers["X-Error-Message"]
    resp = httpx2.put(f"{hub.url}/api/datasets/{repo_id}/settings", json={"discussionsDisabled": True},
                      headers={"Authorization": f"Bearer {hub.users['alice']}"})
    assert resp.status_code == 400  # not silently ignored
    plain = f"alice/{repo_name}-plain"
    alice.create_repo(plain)
    assert _ask(hub, plain, hub.users["bob"]).status_code == 400  # not gated
    with pytest.raises(HfHubHTTPError) as ungated:
        list(alice.list_pending_access_requests(plain))
    assert ungated.value.response.status_code == 400


def test_auth_check_of_missing_and_private_repos(hub, alice, bob, repo_name):
    with pytest.raises(RepositoryNotFoundError):
        bob.auth_check("alice/does-not-exist")
    alice.create_repo(f"alice/{repo_name}", private=True)
    with pytest.raises(RepositoryNotFoundError):
        bob.auth_check(f"alice/{repo_name}")


def test_likes(hub, alice, bob, anon, repo_name):
    repo_id = f"alice/{repo_name}"
    alice.create_repo(repo_id)
    for _ in range(2):  # huggingface_hub has no like(): the Hub's button posts here; idempotent
        resp = httpx2.post(f"{hub.url}/api/models/{repo_id}/like", headers={"Authorization": f"Bearer {hub.users['bob']}"})
        assert resp.status_code == 200
    assert [u.username for u in anon.list_repo_likers(repo_id)] == ["bob"]
    assert repo_id in anon.list_liked_repos("bob").models
    bob.unlike(repo_id)
    assert repo_id not in bob.list_liked_repos().models
    with pytest.raises(RepositoryNotFoundError):
        bob.unlike("missing_repo_id")
