"""The client facade (adapterhub.Client): what the CLI and the runtime call, used as a library."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from adapterhub.errors import IntegrityError, LockfileError, ResolutionError, UsageError

from .conftest import file_list


def test_client_is_exported_lazily_and_torch_free():
    import subprocess
    import sys

    import adapterhub
    import adapterhub.client

    assert adapterhub.Client is adapterhub.client.Client
    assert adapterhub.ensure_installed is adapterhub.client.ensure_installed
    assert {"Client", "ensure_installed"} <= set(adapterhub.__all__)
    code = ("import sys, adapterhub; adapterhub.Client; "
            "print(sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_install_writes_the_lock_and_sync_reinstalls_it(client_env, tmp_path, monkeypatch):
    from adapterhub import Client
    from adapterhub.client.lockfile import read_lock, render

    lock = tmp_path / "locks" / "adapterhub.lock"
    lock.parent.mkdir()
    seen = []
    report = Client().install(["sentiment/sst2@1.0.0", "alice/nli-lora"], lock=lock, on_plan=seen.append)
    assert seen == [report.plan] and report.lock == lock.resolve()
    assert [r.action for r in report.results] == ["installed", "installed"]
    first = report.results[0]
    assert (first.name, first.version, first.record.method.name) == ("sentiment/sst2", "1.0.0", "lora")
    assert file_list(first.path) == file_list(client_env.adapters["lora-a@v1.0.0"])
    text = lock.read_text()
    assert render(read_lock(lock)) == text  # the lock round-trips through the typed records
    data = tomllib.loads(text)
    assert [a["name"] for a in data["adapter"]] == ["alice/nli-lora", "sentiment/sst2"]

    client = Client()
    assert len(client.uninstall(["sentiment/sst2", "alice/nli-lora"])) == 2
    assert client.installed() == []
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    synced = Client().sync(lock)  # from the blobs still in the store, without the network
    assert sorted(r.action for r in synced.results) == ["installed", "installed"]
    assert Client().verify().ok
    assert lock.read_text() == text  # sync never rewrites the lock


def test_install_checks_its_arguments(client_env, tmp_path):
    from adapterhub import Client

    client = Client()
    with pytest.raises(UsageError, match="--lock and --locked"):
        client.install(["x/y"], lock=tmp_path / "a.lock", locked=tmp_path / "b.lock")
    with pytest.raises(UsageError, match="exactly one SOURCE"):
        client.install(["x/y", "x/z"], revision="main")
    with pytest.raises(UsageError, match="nothing to install"):
        client.install([])
    with pytest.raises(LockfileError, match="no such lock file"):
        client.sync(tmp_path / "missing.lock")


def test_dry_run_plans_and_installs_nothing(client_env):
    from adapterhub import Client

    report = Client().install(["sentiment/sst2"], dry_run=True)
    assert report.dry_run and report.results == ()
    [item] = report.plan.items
    assert (item.resolved.kind, item.resolved.version, item.installed) == ("registry", "1.1.0", False)
    assert item.download_bytes == sum(f["size"] for f in file_list(client_env.adapters["lora-a@v1.1.0"]))
    assert report.to_json()["plan"]["index"] == str(client_env.index_dir)
    assert Client().installed() == []


def test_search_info_verify_uninstall(client_env):
    from adapterhub import Client, ensure_installed

    client = Client()
    found = client.search("sst2")
    assert [(h.entry.name, h.latest) for h in found.hits] == [("nli/sst2", "0.1.0"), ("sentiment/sst2", "1.1.0")]
    assert "sentiment/sst2" in client.search("sentimnet/sst2").suggestions
    path = ensure_installed("sentiment/sst2@1.0.0")
    info = client.info("sentiment/sst2")
    assert sorted(info.entry.versions) == ["1.0.0", "1.1.0", "1.2.0", "2.0.0rc1"]
    assert [r.directory for r in info.installed] == [path]
    assert client.verify(["sentiment/sst2"]).checked[0].display_name == "sentiment/sst2"
    with pytest.raises(ResolutionError, match="not installed"):
        client.verify(["alice/nope"])
    with pytest.raises(ResolutionError, match="neither in the index"):
        client.info("alice/nope")
    weights = path / "adapter_model.safetensors"
    weights.chmod(0o644)
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    report = client.verify()
    assert not report.ok and any("adapter_model.safetensors" in p for p in report.problems)
    with pytest.raises(IntegrityError, match="corrupted"):
        client.install(["sentiment/sst2@1.0.0"])
    assert client.install(["sentiment/sst2@1.0.0"], force=True).results[0].action == "reinstalled"
    assert [r.commit for r in client.uninstall(["sentiment/sst2@1.0.0"])] == [client_env.commits["lora-a@v1.0.0"]]
    assert client.prune()["blobs"] == 2
    assert not Path(path).exists()
