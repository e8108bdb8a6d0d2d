"""The `adapterhub hub serve` process (:mod:`adapterhub.server.serving`, :mod:`adapterhub.server.testing`):
startup line, SIGTERM, crash and restart, CLI errors, the in-thread server."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys

import httpx2
import pytest
from huggingface_hub import HfApi, constants, hf_hub_download

from adapterhub.server.testing import start_in_thread


def test_serve_prints_one_line_and_stops_on_sigterm(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "adapterhub", "hub", "serve", "--root", str(tmp_path / "r"), "--port", "0", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "ADAPTERHUB_HUB_USERS": "carol:tok-carol"},
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("Serving on http://127.0.0.1:")
        url = line.split()[-1]
        assert httpx2.get(f"{url}/api/whoami-v2", headers={"Authorization": "Bearer tok-carol"}).json()["name"] == "carol"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert out == ""  # exactly one line in all
    assert "tok-carol" not in err


def test_bad_user_spec_is_a_usage_error(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "adapterhub", "hub", "serve", "--root", str(tmp_path), "--user", "nocolon"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "NAME:TOKEN" in result.stderr


def test_data_survives_a_crash_and_restart(tmp_path, fresh_hub):
    with fresh_hub(tmp_path / "root") as hub:
        token = hub.users["alice"]
        api = HfApi(endpoint=hub.url, token=token)
        api.create_repo("alice/durable")
        info = api.upload_file(path_or_fileobj=b"kept", path_in_repo="k.txt", repo_id="alice/durable")
        # Leftovers of an interrupted write must not confuse the next start.
        (hub.root / "tmp" / "deadbeef.upload").write_bytes(b"partial")
        hub.kill()
        assert not hub.running
        hub.restart()
        assert hub.running
        api = HfApi(endpoint=hub.url, token=token)
        assert api.model_info("alice/durable").sha == info.oid
        path = hf_hub_download("alice/durable", "k.txt", endpoint=hub.url, cache_dir=tmp_path / "c")
        assert open(path, "rb").read() == b"kept"
        api.upload_file(path_or_fileobj=b"more", path_in_repo="m.txt", repo_id="alice/durable")
        assert sorted(api.list_repo_files("alice/durable")) == [".gitattributes", "k.txt", "m.txt"]


def test_in_thread_server_takes_uploads_from_a_stock_xet_client(tmp_path, monkeypatch):
    """With --inline-uploads every file travels in the commit, so a client with Xet on uploads fine;
    the file is stored as an LFS file all the same."""
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", False)
    url, stop = start_in_thread(tmp_path / "root", {"dave": "tok-d"}, inline_uploads=True)
    try:
        api = HfApi(endpoint=url, token="tok-d")
        api.create_repo("dave/t")
        folder = tmp_path / "f"
        folder.mkdir()
        data = os.urandom(300_000)
        (folder / "adapter_model.safetensors").write_bytes(data)
        api.upload_folder(repo_id="dave/t", folder_path=folder)
        assert api.list_repo_files("dave/t") == [".gitattributes", "adapter_model.safetensors"]
        [entry] = api.get_paths_info("dave/t", ["adapter_model.safetensors"])
        assert entry.lfs is not None and entry.lfs.sha256 == hashlib.sha256(data).hexdigest()
        path = hf_hub_download("dave/t", "adapter_model.safetensors", endpoint=url, cache_dir=tmp_path / "c")
        assert open(path, "rb").read() == data
    finally:
        stop()


def test_a_stock_xet_client_is_told_how_to_upload(tmp_path, monkeypatch):
    """By default LFS files go through git-LFS; a client with Xet on fails before anything is
    committed, and its error (hf_xet shows only a URL) carries the fix."""
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", False)
    url, stop = start_in_thread(tmp_path / "root", {"dave": "tok-d"})
    try:
        api = HfApi(endpoint=url, token="tok-d")
        api.create_repo("dave/t")
        before = api.model_info("dave/t").sha
        with pytest.raises(Exception, match="HF_HUB_DISABLE_XET=1") as err:
            api.upload_file(path_or_fileobj=b"weights", path_in_repo="adapter_model.safetensors", repo_id="dave/t")
        assert "inline-uploads" in str(err.value)
        assert api.model_info("dave/t").sha == before
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
        api.upload_file(path_or_fileobj=b"weights", path_in_repo="adapter_model.safetensors", repo_id="dave/t")
        assert api.get_paths_info("dave/t", ["adapter_model.safetensors"])[0].lfs is not None
    finally:
        stop()
