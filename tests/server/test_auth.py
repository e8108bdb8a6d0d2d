"""Users, organisations and tokens (:mod:`adapterhub.server.auth`): who may read private repos and
who may write where, through the real client; account validation, roles and signed upload URLs as
units."""

from __future__ import annotations

import pytest
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from adapterhub.server.auth import Auth, build_accounts, load_config, parse_orgs, parse_users


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


def test_write_needs_a_token_for_the_namespace(hub, alice, bob, anon, hf_api, repo_name):
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
        hf_api("nope").whoami()
    assert bad_token.value.response.status_code == 401
    assert alice.list_repo_files(repo_id) == [".gitattributes"]
    assert bob.whoami()["name"] == "bob"
    log = hub.stderr_text()
    assert "/api/whoami-v2" in log  # the access log is on...
    assert not any(token in log for token in hub.users.values())  # ...and never shows a token


# --- units ------------------------------------------------------------------------------------


def test_parse_users_reads_lists_and_comma_strings():
    assert parse_users(None) == {} and parse_users("") == {}
    assert parse_users(["alice:tok-a", " bob:tok:b "]) == {"alice": "tok-a", "bob": "tok:b"}
    assert parse_users("alice:tok-a,\nbob:tok-b,") == {"alice": "tok-a", "bob": "tok-b"}


@pytest.mark.parametrize("spec", ["nocolon", ":tok", "alice:", "alice:tok,bob"])
def test_parse_users_refuses_bad_specs_without_echoing_a_token(spec):
    with pytest.raises(ValueError, match="NAME:TOKEN") as err:
        parse_users(spec)
    assert "tok" not in str(err.value).replace("TOKEN", "")


def test_bearer_tokens_map_to_their_user(tmp_path):
    auth = Auth({"alice": "tok-a", "bob": "tok-b"}, tmp_path)
    assert auth.user_for("Bearer tok-a") == "alice"
    assert auth.user_for("bearer  tok-b ") == "bob"
    for header in (None, "", "Bearer", "Bearer ", "Basic tok-a", "Bearer tok-c", "tok-a"):
        assert auth.user_for(header) is None
    assert auth.users == {"alice", "bob"}


def test_signed_urls_authorise_exactly_their_parts_until_expiry(tmp_path):
    auth = Auth({}, tmp_path)
    expires, sig = auth.sign("upload", "ab" * 32, "10")
    assert auth.verify(expires, sig, "upload", "ab" * 32, "10")
    assert not auth.verify(expires, sig, "upload", "ab" * 32, "11")  # another size
    tampered = ("1" if sig[0] == "0" else "0") + sig[1:]
    assert not auth.verify(expires, tampered, "upload", "ab" * 32, "10")
    assert not auth.verify("not-a-number", sig, "upload", "ab" * 32, "10")
    old_expires, old_sig = auth.sign("upload", "x", ttl_s=-1)
    assert not auth.verify(old_expires, old_sig, "upload", "x")


def test_the_signing_secret_is_kept_under_the_root(tmp_path):
    expires, sig = Auth({}, tmp_path).sign("upload", "x")
    assert Auth({}, tmp_path).verify(expires, sig, "upload", "x")  # a restarted server agrees
    (tmp_path / "other").mkdir()
    assert not Auth({}, tmp_path / "other").verify(expires, sig, "upload", "x")
    assert (tmp_path / "secret").stat().st_mode & 0o077 == 0


def test_parse_orgs_reads_members_and_roles():
    assert parse_orgs(None) == {}
    assert parse_orgs(["team:alice=admin,bob", "solo:"]) == {"team": {"alice": "admin", "bob": "write"}, "solo": {}}
    assert parse_orgs("team:alice;other:bob=read") == {"team": {"alice": "write"}, "other": {"bob": "read"}}
    with pytest.raises(ValueError, match="NAME:MEMBER"):
        parse_orgs("no-colon")


@pytest.mark.parametrize(
    ("users", "orgs", "message"),
    [
        ({"-bad": "t"}, None, "invalid user name '-bad'"),
        ({"a--b": "t"}, None, "invalid user name"),
        ({"Alice": "t1", "alice": "t2"}, None, "given twice"),
        ({"alice": "t", "bob": "t"}, None, "share a token"),
        ({"alice": {"fullname": "A"}}, None, "no token"),
        ({"alice": "t"}, {"alice": ["alice"]}, "name of a user"),
        ({"alice": "t"}, {"team": ["carol"]}, "'carol' is not a user"),
        ({"alice": "t"}, {"team": {"alice": "owner"}}, "role 'owner'"),
        ({"alice": "t"}, {"bad.": ["alice"]}, "invalid organisation name"),
    ],
)
def test_accounts_are_validated_at_startup(users, orgs, message):
    with pytest.raises(ValueError, match=message):
        build_accounts(users, orgs)


def test_roles_decide_who_reads_and_writes(tmp_path):
    accounts = build_accounts(
        {"__DUMMY_HUB_USER__": "t0", "Alice": {"token": "t1", "fullname": "Alice M."}, "bob": "t2", "carol": "t3"},
        {"Team": {"members": {"alice": "admin", "BOB": "write", "carol": "read"}, "private_by_default": True}},
    )
    auth = Auth(accounts, tmp_path)
    assert auth.account("alice").fullname == "Alice M." and auth.org("team").private_by_default
    assert [o.name for o in auth.orgs_of("carol")] == ["Team"] and auth.orgs_of("__dummy_hub_user__") == []
    assert auth.role("alice", "ALICE") == "admin" and auth.role("bob", "team") == "write"
    assert auth.is_admin("alice", "team") and not auth.is_admin("bob", "team")
    assert auth.can_write("bob", "Team") and not auth.can_write("carol", "team") and not auth.can_write(None, "team")
    assert auth.can_read("carol", "team", private=True) and not auth.can_read("__DUMMY_HUB_USER__", "team", True)
    assert auth.can_read(None, "team", private=False)


def test_a_toml_config_gives_users_and_orgs(tmp_path):
    config = tmp_path / "hub.toml"
    config.write_text(
        '[users.alice]\ntoken = "t1"\nfullname = "Alice"\n[users.bob]\ntoken = "t2"\n'
        '[orgs.team]\nmembers = ["alice", "bob"]\nfullname = "The Team"\n'
    )
    users, orgs = load_config(config)
    accounts = build_accounts(users, orgs)
    assert accounts.orgs["team"].fullname == "The Team" and accounts.orgs["team"].members == {
        "alice": "write", "bob": "write"}
    config.write_text("[servers]\nx = 1\n")
    with pytest.raises(ValueError, match="unknown section"):
        load_config(config)
    config.write_text("[users\n")
    with pytest.raises(ValueError, match="cannot read"):
        load_config(config)
