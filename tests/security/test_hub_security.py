"""The local Hub enforces auth on every route, answers malformed input with 4xx, and bounds bodies."""

from __future__ import annotations

import json

import pytest
from huggingface_hub import CommitOperationAdd
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError
from huggingface_hub.utils import get_session

from .conftest import MAX_BODY, USERS


def _auth(user: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {USERS[user]}"} if user else {}


def test_private_repo_is_invisible_on_every_read_route(hub, api, repo_name, tmp_path):
    repo_id = f"alice/{repo_name}"
    alice = api("alice")
    alice.create_repo(repo_id, private=True)
    alice.upload_file(path_or_fileobj=b"secret weights", path_in_repo="w/adapter.safetensors", repo_id=repo_id)
    assert alice.model_info(repo_id).private is True

    for user in (None, "bob"):
        other = api(user)
        with pytest.raises(RepositoryNotFoundError):
            other.model_info(repo_id)
        with pytest.raises(RepositoryNotFoundError):
            list(other.list_repo_tree(repo_id, recursive=True))
        with pytest.raises(RepositoryNotFoundError):
            other.list_repo_refs(repo_id)
        with pytest.raises(RepositoryNotFoundError):
            other.list_repo_commits(repo_id)
        with pytest.raises(RepositoryNotFoundError):
            other.get_paths_info(repo_id, ["w/adapter.safetensors"])
        with pytest.raises(RepositoryNotFoundError):
            other.hf_hub_download(repo_id, "w/adapter.safetensors", cache_dir=tmp_path / f"c-{user}")
        assert repo_id not in [m.id for m in other.list_models(search=repo_name)]
        # raw routes the client reaches without a helper: resolve by commit id and the LFS batch API
        sha = alice.model_info(repo_id).sha
        session = get_session()
        got = session.get(f"{hub.url}/{repo_id}/resolve/{sha}/w/adapter.safetensors", headers=_auth(user))
        assert got.status_code == 404 and b"secret" not in got.content
        batch = session.post(f"{hub.url}/{repo_id}.git/info/lfs/objects/batch", headers=_auth(user),
                             json={"operation": "upload", "objects": [{"oid": "0" * 64, "size": 1}]})
        assert batch.status_code in (401, 404), batch.status_code
        verify = session.post(f"{hub.url}/_lfs/verify/models/{repo_id}", headers=_auth(user),
                              json={"oid": "0" * 64, "size": 1})
        assert verify.status_code in (401, 404), verify.status_code
    assert repo_id in [m.id for m in alice.list_models(search=repo_name)]


def test_writes_need_the_owners_token_on_every_write_route(hub, api, repo_name):
    repo_id = f"alice/{repo_name}"
    api("alice").create_repo(repo_id)
    for user, statuses in ((None, {401}), ("bob", {403})):
        other = api(user)
        calls = {
            "commit": lambda: other.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=repo_id),
            "tag": lambda: other.create_tag(repo_id, tag="v1"),
            "branch": lambda: other.create_branch(repo_id, branch="dev"),
            "settings": lambda: other.update_repo_settings(repo_id, private=True),
            "delete": lambda: other.delete_repo(repo_id),
        }
        for route, call in calls.items():
            with pytest.raises(HfHubHTTPError) as info:
                call()
            assert info.value.response.status_code in statuses, (user, route, info.value.response.status_code)
    info = api(None).model_info(repo_id)  # still there, still public, untouched
    assert info.private is False and [s.rfilename for s in info.siblings] == [".gitattributes"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "api/models/{repo}/preupload/main", {"files": [{"path": "a.bin", "size": "huge"}]}),
        ("POST", "api/models/{repo}/preupload/main", {"files": ["not-an-object"]}),
        ("POST", "api/models/{repo}/preupload/main", {"files": 7}),
        ("POST", "api/models/{repo}/paths-info/main", ["a", "b"]),
        ("POST", "{repo}.git/info/lfs/objects/batch", {"operation": "upload", "objects": [{"oid": "a", "size": "x"}]}),
        ("POST", "_lfs/verify/models/{repo}", {"oid": "0" * 64, "size": "x"}),
        ("POST", "api/repos/create", {"name": "ok-name", "organization": ["alice"]}),
        ("POST", "api/validate-yaml", ["content"]),
        ("POST", "api/models/{repo}/branch/dev", ["startingPoint"]),
        ("POST", "api/models/{repo}/preupload/main", "DEEP"),
    ],
)
def test_malformed_json_is_a_4xx_never_a_500(hub, api, repo_name, method, path, body):
    repo_id = f"alice/{repo_name}"
    api("alice").create_repo(repo_id)
    data = ("[" * 100_000 + "]" * 100_000) if body == "DEEP" else json.dumps(body)
    got = get_session().request(method, f"{hub.url}/{path.format(repo=repo_id)}", content=data.encode(),
                                headers={**_auth("alice"), "Content-Type": "application/json"})
    assert 400 <= got.status_code < 500, (got.status_code, got.text[:200])


@pytest.mark.parametrize(
    "lines",
    [
        [{"key": "header", "value": ["not", "an", "object"]}],
        [{"key": "header", "value": {}}, {"key": "file", "value": ["x"]}],
        [{"key": "header", "value": {}}, {"key": "lfsFile", "value": {"path": "a", "oid": "0" * 64, "size": "x"}}],
    ],
)
def test_malformed_commit_lines_are_a_4xx(hub, api, repo_name, lines):
    repo_id = f"alice/{repo_name}"
    api("alice").create_repo(repo_id)
    body = "\n".join(json.dumps(line) for line in lines).encode()
    got = get_session().post(f"{hub.url}/api/models/{repo_id}/commit/main", content=body,
                             headers={**_auth("alice"), "Content-Type": "application/x-ndjson"})
    assert 400 <= got.status_code < 500, (got.status_code, got.text[:200])


def test_request_bodies_are_bounded(hub, api, repo_name):
    repo_id = f"alice/{repo_name}"
    alice = api("alice")
    alice.create_repo(repo_id)
    small = b"s" * 100
    alice.upload_file(path_or_fileobj=small, path_in_repo="small.txt", repo_id=repo_id)
    # Inline (non-LFS) content above the limit: the commit body is refused with 413.
    big = b"b" * (MAX_BODY + 1024)
    with pytest.raises(HfHubHTTPError) as info:
        alice.create_commit(repo_id, [CommitOperationAdd("big.txt", big)], commit_message="too big")
    assert info.value.response.status_code == 413
    assert sorted(alice.list_repo_files(repo_id)) == [".gitattributes", "small.txt"] or sorted(
        alice.list_repo_files(repo_id)) == ["small.txt"]


def test_lfs_upload_is_bounded_by_its_signed_size_not_the_body_limit(hub, api, repo_name, tmp_path):
    repo_id = f"alice/{repo_name}"
    alice = api("alice")
    alice.create_repo(repo_id)
    data = bytes(range(256)) * (3 * MAX_BODY // 256)  # above the LFS threshold and the body limit
    alice.upload_file(path_or_fileobj=data, path_in_repo="large.bin", repo_id=repo_id)
    got = alice.hf_hub_download(repo_id, "large.bin", cache_dir=tmp_path / "c")
    assert open(got, "rb").read() == data


def test_model_card_aliases_cannot_blow_up_repo_info_or_listing(hub, api, repo_name):
    """A ~300-byte README whose YAML nests aliases ("billion laughs") used to expand into gigabytes
    of JSON in every model_info / list_models answer that carries the card."""
    import base64
    import time

    repo_id = f"alice/{repo_name}"
    alice = api("alice")
    alice.create_repo(repo_id)
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    # 9**8 leaves: unfixed, this is a slow failure rather than one that exhausts the machine's memory
    levels += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 8)]
    card = "---\nlicense: mit\n" + "\n".join(levels) + "\n---\n# bomb\n"
    lines = [
        {"key": "header", "value": {"summary": "card"}},
        {"key": "file", "value": {"path": "README.md", "content": base64.b64encode(card.encode()).decode(),
                                  "encoding": "base64"}},
    ]
    got = get_session().post(f"{hub.url}/api/models/{repo_id}/commit/main",
                             content="\n".join(json.dumps(x) for x in lines).encode(),
                             headers={**_auth("alice"), "Content-Type": "application/x-ndjson"})
    assert got.status_code == 200, got.text[:200]
    started = time.monotonic()
    info = alice.model_info(repo_id)
    listed = [m for m in api(None).list_models(search=repo_name, cardData=True, full=True)]
    assert time.monotonic() - started < 20
    assert [m.id for m in listed] == [repo_id]
    assert not (info.card_data or {}).get("a7")  # the card was not expanded into the answer
    # validate-yaml says why such a card is refused
    answer = get_session().post(f"{hub.url}/api/validate-yaml", json={"content": card, "repoType": "model"})
    assert answer.status_code == 400 and "alias" in answer.text
