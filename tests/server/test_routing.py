"""Routing (:mod:`adapterhub.server.routing`): raw path segments, pattern matching, dispatch to
handlers, and the shape of answers and errors. In process, through Flask's test client."""

from __future__ import annotations

import pytest

from adapterhub.server.errors import HubError
from adapterhub.server.routing import _match, error_response, raw_segments

from .conftest import USERS

_AUTH = {"Authorization": f"Bearer {USERS['alice']}"}


@pytest.mark.parametrize(
    ("environ", "segments"),
    [
        ({"RAW_URI": "/api/models/a/b/revision/feature%2Fx?x=1"}, ["api", "models", "a", "b", "revision", "feature/x"]),
        ({"REQUEST_URI": "http://h:1/a//b/c%20d"}, ["a", "b", "c d"]),
        ({"RAW_URI": "/a/caf%C3%A9"}, ["a", "caf\xe9"]),
        ({"PATH_INFO": "/a/caf\xc3\xa9/"}, ["a", "caf\xe9"]),  # WSGI's latin-1 view of UTF-8
        ({}, []),
    ],
)
def test_raw_segments_decode_each_segment_on_its_own(environ, segments):
    assert raw_segments(environ) == segments


def test_raw_segments_refuse_invalid_utf8():
    with pytest.raises(UnicodeDecodeError):
        raw_segments({"RAW_URI": "/a/%ff"})


def test_patterns():
    tree = ("api", "{T}", "{ns}", "{name}", "tree", "{rev}", "{*path}")
    assert _match(tree, ["api", "models", "a", "b", "tree", "main"]) == {
        "T": "models", "ns": "a", "name": "b", "rev": "main", "path": ""
    }
    assert _match(tree, ["api", "datasets", "a", "b", "tree", "v1", "x", "y"])["path"] == "x/y"
    assert _match(tree, ["api", "buckets", "a", "b", "tree", "main"]) is None  # {T}: plural repo types only
    resolve = ("{pfx}", "{ns}", "{name}", "resolve", "{rev}", "{*path}")
    assert _match(resolve, ["models", "a", "b", "resolve", "main", "f"]) is None  # {pfx}: datasets, spaces
    assert _match(resolve, ["spaces", "a", "b", "resolve", "main", "f"])["pfx"] == "spaces"
    lfs = ("{ns}", "{name_git}", "info")
    assert _match(lfs, ["a", "b.git", "info"]) == {"ns": "a", "name_git": "b"}
    assert _match(lfs, ["a", "b", "info"]) is None and _match(lfs, ["a", ".git", "info"]) is None
    assert _match(("api", "x"), ["api", "x", "y"]) is None and _match(("api", "x"), ["api"]) is None


def test_unknown_endpoints_wrong_methods_and_bad_paths(app_client):
    missing = app_client.get("/api/nothing/here")
    assert missing.status_code == 404 and missing.json == {"error": "No such endpoint: GET /api/nothing/here"}
    wrong = app_client.delete("/api/whoami-v2")
    assert wrong.status_code == 405 and "DELETE" in wrong.headers["X-Error-Message"]
    bad = app_client.get("/a/%ff", environ_base={"RAW_URI": "/a/%ff"})
    assert bad.status_code == 400 and "UTF-8" in bad.json["error"]


def test_head_is_served_by_get_handlers_without_a_body(app_client):
    assert app_client.post("/api/repos/create", json={"name": "r"}, headers=_AUTH).status_code == 200
    assert app_client.head("/api/models/alice/r").status_code == 200
    assert app_client.head("/api/models/alice/r").data == b""


def test_handler_errors_become_hub_answers(app_client):
    answer = app_client.get("/api/models/alice/nope")
    assert answer.status_code == 404
    assert answer.headers["X-Error-Code"] == "RepoNotFound"
    assert answer.json["error"] == answer.headers["X-Error-Message"]
    malformed = app_client.post("/api/repos/create", json={"name": ["not", "a", "string"]}, headers=_AUTH)
    assert malformed.status_code == 400
    unauthenticated = app_client.get("/api/whoami-v2")
    assert unauthenticated.status_code == 401


def test_body_limit_is_a_413_in_the_hub_shape(tmp_path):
    from adapterhub.server.app import create_app

    client = create_app(tmp_path, USERS, max_body_bytes=10).test_client()
    answer = client.post("/api/repos/create", data=b"x" * 100, headers=_AUTH)
    assert answer.status_code == 413 and "error" in answer.json


def test_error_messages_become_ascii_headers_and_extra_body_fields():
    err = HubError(409, "d\xe9j\xe0 there\nnext", "Conflict", headers={"X-A": "1"}, body={"url": "u"})
    response = error_response(err, {"X-B": "2"})
    assert response.status_code == 409
    assert response.headers["X-Error-Message"] == "d?j? there?next"
    headers = response.headers
    assert (headers["X-Error-Code"], headers["X-A"], headers["X-B"]) == ("Conflict", "1", "2")
    assert response.get_json() == {"error": "d\xe9j\xe0 there\nnext", "url": "u"}
    assert "X-Error-Code" not in error_response(HubError(400, "plain")).headers


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/models/gpt2"),
        ("GET", "/api/models/gpt2/revision/main"),
        ("GET", "/api/datasets/squad/tree/main"),
        ("HEAD", "/gpt2/resolve/main/config.json"),
        ("GET", "/bert-base-uncased/resolve/main/config.json"),
        ("HEAD", "/datasets/squad/resolve/main/x.csv"),
        ("DELETE", "/api/models/missing_repo_id/like"),
        ("GET", "/api/models/gpt2/refs"),
    ],
)
def test_one_segment_repo_ids_are_missing_repos(app_client, method, path):
    """``gpt2`` is a repo id on huggingface.co; here it names no repo, and says so the Hub's way."""
    answer = app_client.open(path, method=method)
    assert answer.status_code == 404 and answer.headers["X-Error-Code"] == "RepoNotFound"


def test_every_answer_carries_a_request_id(app_client):
    assert app_client.get("/api/whoami-v2", headers={"X-Request-Id": "custom-id"}).headers["X-Request-Id"] == "custom-id"
    trace = "5d7a4c5e-8d5b-4f3a-9d6c-1234567890ab"
    assert app_client.get("/api/models", headers={"X-Amzn-Trace-Id": trace}).headers["X-Request-Id"] == trace
    generated = {app_client.get("/api/models").headers["X-Request-Id"] for _ in range(3)}
    assert len(generated) == 3
    evil = app_client.get("/api/models", headers={"X-Request-Id": "a\x7fb c"}).headers["X-Request-Id"]
    assert evil == "abc"


def test_transformers_reports_a_missing_model_not_a_broken_server(hub, tmp_path, anon):
    """``AutoModel.from_pretrained("gpt2")`` against an empty local Hub: transformers' own message."""
    import subprocess
    import sys

    assert anon.repo_exists("gpt2") is False and anon.repo_exists("bert-base-uncased") is False
    script = (
        "import transformers\n"
        "try:\n"
        "    transformers.AutoModel.from_pretrained('gpt2')\n"
        "except OSError as exc:\n"
        "    print(exc)\n"
    )
    env = {"PATH": "/usr/bin:/bin", "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "home"),
           "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_XET": "1"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert "is not a valid model identifier" in out.stdout, out.stdout + out.stderr
    assert "couldn't connect" not in out.stdout.lower()
