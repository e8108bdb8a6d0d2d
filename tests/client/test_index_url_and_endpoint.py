"""An index served over plain http(s) (the Hub's resolve URL), and endpoints that are not a Hub."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from .conftest import entry, run_cli

REGISTRY_REPO = "alice/registry-http"


def _upload_index(seeded, tmp_path, entries_dir) -> str:
    """Compile ``entries_dir`` and publish it with the real huggingface_hub client; its plain URL."""
    from adapterhub.client.authoring import build_index

    out = build_index(entries_dir, tmp_path / "compiled" / "index.json")
    api = seeded.api()
    api.create_repo(REGISTRY_REPO, exist_ok=True)
    api.upload_file(path_or_fileobj=str(out), path_in_repo="index.json", repo_id=REGISTRY_REPO)
    return f"{seeded.url}/{REGISTRY_REPO}/resolve/main/index.json"


def test_http_index_installs_by_name_and_is_fetched_every_run(client_env, tmp_path, monkeypatch):
    import shutil

    entries = tmp_path / "entries"
    shutil.copytree(client_env.index_dir, entries)
    url = _upload_index(client_env, tmp_path, entries)
    monkeypatch.delenv("ADAPTERHUB_INDEX")

    result = run_cli("install", "sentiment/sst2", "--index", url, "--json")
    assert result.exit_code == 0, result.stderr
    installed = result.json()["installed"][0]
    assert (installed["name"], installed["version"]) == ("sentiment/sst2", "1.1.0")
    assert result.json()["plan"]["adapters"][0]["revision"] == client_env.commits["lora-a@v1.1.0"]
    assert run_cli("verify", "sentiment/sst2").exit_code == 0

    # ADAPTERHUB_INDEX works the same way as --index.
    monkeypatch.setenv("ADAPTERHUB_INDEX", url)
    names = {r["name"] for r in run_cli("search", "sst2", "--json").json()["results"]}
    assert names == {"sentiment/sst2", "nli/sst2"}

    # As --help says: downloaded again on every run (a new entry shows up at once, no stale copy) ...
    extra = entry("extra/fresh-one", json.loads((entries / "nli/sst2.json").read_text())["versions"])
    (entries / "extra").mkdir()
    (entries / "extra/fresh-one.json").write_text(json.dumps(extra))
    _upload_index(client_env, tmp_path, entries)
    names = {r["name"] for r in run_cli("search", "fresh", "--json").json()["results"]}
    assert names == {"extra/fresh-one"}
    # ... and --offline uses the last downloaded copy.
    result = run_cli("search", "fresh", "--offline", "--json")
    assert result.exit_code == 0, result.stderr
    assert {r["name"] for r in result.json()["results"]} == {"extra/fresh-one"}


def test_http_index_404_names_the_url_without_credentials(client_env):
    url = f"{client_env.url}/{REGISTRY_REPO}/resolve/main/no-such-index.json"
    secret_url = url.replace("http://", "http://bob:s3cret-pass@")
    start = time.monotonic()
    result = run_cli("search", "x", "--index", secret_url)
    assert result.exit_code == 1
    assert f"error: could not fetch index {url}: the server answered HTTP 404" in result.stderr
    assert "s3cret" not in result.stderr + result.stdout and "bob" not in result.stderr
    assert "hint: check the URL" in result.stderr
    assert time.monotonic() - start < 10


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_http_index_fails_fast(client_env):
    url = f"http://127.0.0.1:{_free_port()}/index.json"  # nothing listens there
    start = time.monotonic()
    result = run_cli("install", "sentiment/sst2", "--index", url.replace("//", "//u:tok-hidden@"))
    elapsed = time.monotonic() - start
    assert result.exit_code == 1
    assert f"error: could not fetch index {url}:" in result.stderr and "refused" in result.stderr.lower()
    assert "tok-hidden" not in result.stderr
    assert elapsed < 5, f"took {elapsed:.1f}s to report a refused connection"


# --- an endpoint that is some other web server --------------------------------------------------


class _NotFoundEverywhere(http.server.BaseHTTPRequestHandler):
    requests: list[str] = []

    def _answer(self) -> None:
        type(self).requests.append(self.path)
        body = b"<html>Not Found</html>"
        self.send_response(404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = _answer

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass


@pytest.fixture
def not_a_hub() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotFoundEverywhere)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _NotFoundEverywhere.requests = []
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _assert_not_a_hub_error(stderr: str, endpoint: str, what: str) -> None:
    assert f"error: {endpoint} answered HTTP 404 for {what}" in stderr
    assert "; is it a Hugging Face Hub endpoint?" in stderr
    assert "hint:" in stderr and "--endpoint / HF_ENDPOINT" in stderr
    assert "HfHubHTTPError" not in stderr


def test_repo_install_from_a_non_hub_endpoint(client_env, not_a_hub):
    with_secret = not_a_hub.replace("http://", "http://carol:pa55word-x@")
    result = run_cli("install", "alice/nli-lora@v0.1.0", "--endpoint", with_secret)  # a repo id, not in the index
    assert result.exit_code == 1
    _assert_not_a_hub_error(result.stderr, not_a_hub, "alice/nli-lora;")
    assert "pa55word" not in result.stderr and "carol" not in result.stderr
    assert any(path.startswith("/api/models/alice/nli-lora") for path in _NotFoundEverywhere.requests)


def test_registry_install_from_a_non_hub_endpoint(client_env, not_a_hub, monkeypatch):
    # The index pins the commit, so the first request is the file download itself.
    monkeypatch.setenv("HF_ENDPOINT", not_a_hub)
    result = run_cli("install", "nli/sst2")
    assert result.exit_code == 1
    commit = client_env.commits["nli"][:12]
    _assert_not_a_hub_error(result.stderr, not_a_hub, f"alice/nli-lora@{commit}/")
    assert run_cli("list", "--json").json()["installed"] == []
