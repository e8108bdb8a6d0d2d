"""Crash safety and concurrency, with real processes: a killed install leaves nothing visible and a
rerun completes; two concurrent installs of the same adapter both succeed with one copy."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from .conftest import TOKEN, file_list, run_cli, run_subprocess


@pytest.mark.slow
def test_killed_install_leaves_nothing_then_rerun_completes(tmp_path, monkeypatch):
    from huggingface_hub import HfApi

    from adapterhub.server.testing import running_hub

    adapter = tmp_path / "big"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 2, "target_modules": ["q"]}))
    (adapter / "adapter_model.safetensors").write_bytes(os.urandom(64 * 1024 * 1024))
    home = Path(os.environ["ADAPTERHUB_HOME"])
    with running_hub(tmp_path / "hub", {"alice": TOKEN}, lfs_threshold=1024 * 1024) as hub:
        api = HfApi(endpoint=hub.url, token=TOKEN)
        api.create_repo("alice/big")
        commit = api.upload_folder(repo_id="alice/big", folder_path=adapter).oid
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        proc = run_subprocess("install", "alice/big", env={"HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_PROGRESS_BARS": "1"})
        downloads = home / "downloads-v1"
        deadline = time.monotonic() + 60
        # Kill as soon as part of the big file has arrived (huggingface_hub streams into *.incomplete).
        while time.monotonic() < deadline and proc.poll() is None:
            partial = [p for p in downloads.rglob("*.incomplete") if p.stat().st_size > 0] if downloads.exists() else []
            if partial:
                break
            time.sleep(0.005)
        assert proc.poll() is None, "install finished before it could be killed: " + proc.communicate()[1]
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        assert not list(home.glob("installed-v1/**/*.json")), "a killed install must not be visible"
        assert not list(home.glob(f"installed-v1/hf/alice/big/{commit}/*"))
        assert run_cli("list", "--json").json()["installed"] == []

        result = run_cli("install", "alice/big", "--json")
        assert result.exit_code == 0, result.stderr
        out = result.json()["installed"][0]
        assert out["source"]["revision"] == commit
        assert file_list(Path(out["path"])) == file_list(adapter)
        # The Hub gave an LFS sha256 for the big file: the plan said so and it was checked against it.
        plan_files = {f["path"]: f for f in result.json()["plan"]["adapters"][0]["files"]}
        assert plan_files["adapter_model.safetensors"]["expected_from"] == "hub-lfs"
        assert run_cli("verify").exit_code == 0
        assert not list((home / "downloads-v1").rglob("*.incomplete"))


@pytest.mark.slow
def test_two_concurrent_installs(client_env):
    env = {"HF_ENDPOINT": client_env.url, "ADAPTERHUB_INDEX": str(client_env.index_dir)}
    procs = [run_subprocess("install", "sentiment/sst2", "alice/nli-lora", "--json", "-q", env=env) for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err
    actions = sorted(a["action"] for out, _ in outputs for a in json.loads(out)["installed"])
    assert actions.count("installed") == 2 and actions.count("present") == 2
    listed = run_cli("list", "--json").json()["installed"]
    assert len(listed) == 2
    assert run_cli("verify").exit_code == 0
