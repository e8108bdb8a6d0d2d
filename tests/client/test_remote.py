"""The network gate (adapterhub.client.remote): the one place that opens connections.

Offline, every network path (Hub metadata, downloads, an hf:// or http(s) index, a push) fails with
an OfflineError naming what needed the network, and no socket is ever opened. Online, the real
huggingface_hub client talks to the local Hub of this folder's conftest.
"""

from __future__ import annotations

import socket

import pytest

from adapterhub.client import download, remote
from adapterhub.client.models import FileEntry
from adapterhub.errors import AdapterHubError, DownloadError, OfflineError, ResolutionError
from adapterhub.settings import get_settings

from .conftest import TOKEN, make_adapter

COMMIT = "c0" * 20


@pytest.fixture
def no_sockets(monkeypatch):
    """Any socket connection fails the test (a network guard, not a mock of any client)."""
    opened: list[object] = []

    def refuse(self, address, *args):
        opened.append(address)
        raise AssertionError(f"network access to {address!r} while offline")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return opened


@pytest.fixture
def offline(tmp_path, no_sockets):
    return get_settings(home=tmp_path / "home", endpoint="http://127.0.0.1:9", offline=True)


def _offline_error(call) -> str:
    with pytest.raises(OfflineError) as info:
        call()
    assert "offline mode is on" in info.value.message
    return info.value.message


def test_offline_blocks_hub_metadata_and_downloads(offline, tmp_path, no_sockets):
    assert "alice/x@v1" in _offline_error(lambda: remote.resolve_snapshot(offline, "alice/x", "v1"))
    assert remote.list_refs(offline, "alice/x") == []
    job = download.FetchJob("alice/x", COMMIT, FileEntry("a.bin", 3, "ab" * 32), tmp_path / "a.incomplete")
    assert "1 file(s) not in the store" in _offline_error(lambda: download.fetch_files(offline, [job], progress=False))
    assert not job.partial.exists() and no_sockets == []


def test_offline_blocks_index_fetches(offline, no_sockets):
    from adapterhub.client.index import load_index

    url = "http://deploy:s3cret@127.0.0.1:9/index.json?token=t0k"
    message = _offline_error(lambda: remote.http_get(offline, url, what="index x"))
    assert message.startswith("index x:")
    message = _offline_error(lambda: load_index(offline.with_overrides(index=url)))
    assert "http://127.0.0.1:9/index.json" in message and "s3cret" not in message and "t0k" not in message
    _offline_error(lambda: remote.fetch_hf_file(offline, "hf://alice/registry/index.json"))
    _offline_error(lambda: load_index(offline.with_overrides(index="hf://alice/registry/index.json")))
    assert no_sockets == []


def test_offline_blocks_install_and_push(offline, tmp_path, monkeypatch, no_sockets):
    from adapterhub.client import Client
    from adapterhub.publish import push_directory

    message = _offline_error(lambda: Client(offline).plan(["alice/never-installed"]))
    assert "the store has no install" in message
    _offline_error(lambda: remote.HubRepo(offline, "alice/x", "tok").create(private=False))
    monkeypatch.setenv("ADAPTERHUB_OFFLINE", "1")
    adapter = make_adapter(tmp_path / "adapter", seed=1)
    message = _offline_error(lambda: push_directory(adapter, repo_id="alice/x", version="1.0.0", task="t",
                                                    endpoint="http://127.0.0.1:9", token="tok", check=False))
    assert "pushing alice/x" in message
    assert no_sockets == []


def test_resolve_snapshot_reports_the_hubs_hashes(client_env):
    settings = get_settings()
    commit, files = remote.resolve_snapshot(settings, "alice/lora-a", "v1.0.0")
    assert commit == client_env.commits["lora-a@v1.0.0"]
    assert [f.path for f in files] == sorted(f.path for f in files)
    for f in files:  # LFS files (*.safetensors, as on the Hub): the Hub's sha256; others: the git blob id
        if f.path.endswith(".safetensors"):
            assert f.expected_from == "hub-lfs" and len(f.sha256 or "") == 64
        else:
            assert (f.sha256, f.expected_from) == (None, "hub-git") and len(f.git_oid or "") == 40
    assert ".gitattributes" not in [f.path for f in files]  # the Hub's, not the adapter's
    assert {"tag v1.0.0", "branch main"} <= set(remote.list_refs(settings, "alice/lora-a"))


def test_errors_are_translated(client_env):
    settings = get_settings()
    with pytest.raises(ResolutionError, match="repository not found"):
        remote.resolve_snapshot(settings, "alice/no-such-repo", None)
    with pytest.raises(ResolutionError) as info:
        remote.resolve_snapshot(settings, "alice/lora-a", "no-such-tag")
    assert "tag v1.0.0" in (info.value.hint or "")
    with pytest.raises(DownloadError, match="HTTP 404"):
        remote.http_get(settings, f"{client_env.url}/alice/lora-a/resolve/main/nothing.json", what="index x")


def test_http_get_goes_through_the_huggingface_hub_session(client_env, monkeypatch):
    import huggingface_hub

    seen = []
    session = huggingface_hub.get_session()
    real_get = session.get

    def spy(url, **kwargs):
        seen.append((url, kwargs.get("auth")))
        return real_get(url, **kwargs)

    monkeypatch.setattr(session, "get", spy)
    url = client_env.url.replace("http://", "http://bob:pw@") + "/alice/lora-a/resolve/v1.0.0/adapter_config.json"
    body = remote.http_get(get_settings(), url, what="config")
    assert b"LORA" in body
    assert seen == [(client_env.url + "/alice/lora-a/resolve/v1.0.0/adapter_config.json", ("bob", "pw"))]


def test_hub_repo_push_steps(client_env, tmp_path):
    settings = get_settings().with_overrides(token=TOKEN)
    hub = remote.HubRepo(settings, "alice/remote-steps", TOKEN)
    hub.create(private=False)
    folder = make_adapter(tmp_path / "release", seed=5)
    commit = hub.upload(folder, message="m", description="d")
    hub.create_tag("v1", commit, "v1")
    assert hub.tag_commit("v1") == commit and hub.tag_commit("v2") is None
    tree = hub.tree(commit)
    assert {"adapter_config.json", "adapter_model.safetensors"} <= set(tree)
    copy = hub.download("adapter_config.json", commit, tmp_path / "cache")
    assert copy.read_bytes() == (folder / "adapter_config.json").read_bytes()

    denied = remote.HubRepo(settings.with_overrides(token="tok-wrong-123456"), "alice/remote-steps", "tok-wrong-123456")
    with pytest.raises(AdapterHubError) as info:
        denied.create_tag("v2", commit, "v2")
    assert "pushing to" in info.value.message and "tok-wrong-123456" not in str(info.value)
