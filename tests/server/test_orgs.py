"""Organisations (:mod:`adapterhub.server.orgs`, roles from :mod:`adapterhub.server.auth`) through the
real client: a team's adapters live under the team's namespace; admins, writers and readers."""

from __future__ import annotations

import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from adapterhub.server.testing import running_hub

pytestmark = pytest.mark.usefixtures("no_xet")


def _status(exc_info) -> int:
    return exc_info.value.response.status_code


def test_members_write_to_the_team_namespace_by_role(hub, alice, bob, carol, repo_name):
    repo_id = f"team/{repo_name}"
    assert bob.create_repo(repo_id, private=True).repo_id == repo_id  # a writer creates repos
    bob.upload_file(path_or_fileobj=b"w", path_in_repo="adapter.safetensors", repo_id=repo_id)
    assert carol.model_info(repo_id).private  # a reader sees private team repos...
    with pytest.raises(HfHubHTTPError) as reader:
        carol.upload_file(path_or_fileobj=b"x", path_in_repo="x", repo_id=repo_id)  # ...but does not write
    assert _status(reader) == 403
    with pytest.raises(HfHubHTTPError) as no_create:
        carol.create_repo(f"team/{repo_name}-carol")
    assert _status(no_create) == 403
    with pytest.raises(HfHubHTTPError) as settings:
        bob.update_repo_settings(repo_id, private=False)  # settings are for admins
    assert _status(settings) == 403
    alice.update_repo_settings(repo_id, private=False)
    with pytest.raises(HfHubHTTPError) as delete:
        bob.delete_repo(repo_id)
    assert _status(delete) == 403
    alice.move_repo(repo_id, f"team/{repo_name}-renamed")
    alice.delete_repo(f"team/{repo_name}-renamed")


def test_outsiders_see_nothing_private_and_write_nowhere(tmp_path, global_endpoint):
    users = {"alice": "t-a", "mallory": "t-m"}
    with running_hub(tmp_path / "root", users, orgs={"team": ["alice"]}) as hub:
        global_endpoint(hub.url)
        alice, mallory = (HfApi(endpoint=hub.url, token=t) for t in users.values())
        alice.create_repo("team/secret", private=True)
        with pytest.raises(RepositoryNotFoundError):
            mallory.model_info("team/secret")
        with pytest.raises(HfHubHTTPError) as create:
            mallory.create_repo("team/mine")
        assert _status(create) == 403
        with pytest.raises(HfHubHTTPError) as nobody:
            alice.create_repo("nobody/x")  # neither a user nor an organisation
        assert _status(nobody) == 404
        assert [m.username for m in mallory.list_organization_members("team")] == ["alice"]
        assert list(mallory.list_models(author="team")) == []
        assert [m.id for m in alice.list_models(author="team")] == ["team/secret"]


@pytest.mark.usefixtures("hub_is_the_endpoint")
def test_whoami_and_overviews_list_organisations(hub, alice, carol):
    me = carol.whoami()
    assert me["name"] == "carol" and [(o["name"], o["roleInOrg"]) for o in me["orgs"]] == [("team", "read")]
    members = {m.username: m for m in alice.list_organization_members("team")}
    assert set(members) == {"alice", "bob", "carol"}
    assert alice.get_organization_overview("team").name == "team"
    assert [o.name for o in alice.get_user_overview("bob").orgs] == ["team"]
    with pytest.raises(HfHubHTTPError) as missing:
        alice.get_organization_overview("no-such-org")
    assert _status(missing) == 404


def test_private_by_default_organisations_and_storage_listing(tmp_path):
    config = tmp_path / "hub.toml"
    config.write_text('[users.ada]\ntoken = "t-ada"\nfullname = "Ada L."\n'
                      '[orgs.lab]\nmembers = { ada = "admin" }\nprivate_by_default = true\n')
    with running_hub(tmp_path / "root", {}, config=config) as hub:
        ada = HfApi(endpoint=hub.url, token="t-ada")
        assert ada.whoami()["fullname"] == "Ada L."
        assert ada.model_info(ada.create_repo("lab/a").repo_id).private
        assert not ada.model_info(ada.create_repo("lab/b", private=False).repo_id).private
        assert not ada.model_info(ada.create_repo("ada/c").repo_id).private
        listed = {r.id: r.visibility for r in ada.list_user_repos(namespace="lab")}
        assert listed == {"lab/a": "private", "lab/b": "public"}
        assert {r.id for r in ada.list_user_repos()} == {"ada/c"}
