"""A base from a Hub (adapterhub's own server, the real huggingface_hub client): fetched through the
client's network gate into the huggingface_hub cache, only the checkpoint's files, verified; the
offline switch applies; and ``push=`` uploads the finished export."""

from __future__ import annotations

import pytest
from conftest import make_adapter
from publish_helpers import USERS

import adapterhub
from adapterhub.errors import IntegrityError, OfflineError, PublishError

REPO = "alice/tiny-llama-base"


def _lora():
    from peft import LoraConfig

    return LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])


@pytest.fixture(scope="module")
def hub_base(hub, bases, tmp_path_factory):
    """The sharded tiny Llama pushed to the Hub, with files export must not download."""
    import shutil

    from huggingface_hub import HfApi

    src = tmp_path_factory.mktemp("hub-base") / "src"
    shutil.copytree(bases["llama-sharded"], src)
    (src / "pytorch_model.bin").write_bytes(b"pickled weights, never downloaded")
    (src / "original").mkdir()
    (src / "original" / "consolidated.pth").write_bytes(b"never downloaded either")
    (src / "tokenizer_config.json").write_text('{"model_max_length": 64}')
    api = HfApi(endpoint=hub.url, token=USERS["alice"])
    api.create_repo(REPO, exist_ok=True)
    commit = api.upload_folder(repo_id=REPO, folder_path=src).oid
    return commit


@pytest.fixture
def online(hub, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    return hub


def test_a_hub_base_is_fetched_through_the_client_and_recorded(online, hub_base, bases, models, tmp_path):
    adapter = make_adapter(models["llama"], _lora(), tmp_path / "a", seed=31)
    result = adapterhub.export([str(adapter)], base=REPO, out=tmp_path / "out", max_shard_size="40KB")
    local = adapterhub.export([str(adapter)], base=bases["llama-sharded"], out=tmp_path / "local",
                              max_shard_size="40KB")
    assert [s.file for s in result.shards] == [s.file for s in local.shards]
    for shard in result.shards:
        assert (tmp_path / "out" / shard.file).read_bytes() == (tmp_path / "local" / shard.file).read_bytes()
    assert (result.plan.base.repo_id, result.plan.base.commit) == (REPO, hub_base)
    assert f"`{REPO}` @ `{hub_base}`" in (tmp_path / "out" / "README.md").read_text()
    assert "base_model: alice/tiny-llama-base" in (tmp_path / "out" / "README.md").read_text()
    assert (tmp_path / "out" / "tokenizer_config.json").is_file()
    cached = {p.name for p in result.plan.base.path.iterdir()}
    assert "pytorch_model.bin" not in cached and "original" not in cached
    assert "model.safetensors.index.json" in cached


def test_offline_uses_only_the_cache(online, hub_base, models, tmp_path, monkeypatch):
    adapter = make_adapter(models["llama"], _lora(), tmp_path / "a", seed=32)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "fresh-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OfflineError, match="offline"):
        adapterhub.export([str(adapter)], base=REPO, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()
    monkeypatch.delenv("HF_HUB_OFFLINE")
    adapterhub.export([str(adapter)], base=REPO, out=tmp_path / "online")  # fills the cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = adapterhub.export([str(adapter)], base=REPO, out=tmp_path / "offline")
    assert result.plan.base.commit == hub_base
    assert (tmp_path / "offline" / "model.safetensors").read_bytes() == (tmp_path / "online" / "model.safetensors").read_bytes()


def test_a_corrupted_cached_base_fails_verification(online, hub_base, models, tmp_path, monkeypatch):
    adapter = make_adapter(models["llama"], _lora(), tmp_path / "a", seed=33)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    result = adapterhub.export([str(adapter)], base=REPO, out=tmp_path / "first")
    shard = sorted(result.plan.base.path.glob("*.safetensors"))[0].resolve()
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.chmod(0o644)
    shard.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="failed verification"):
        adapterhub.export([str(adapter)], base=REPO, out=tmp_path / "second")
    assert not (tmp_path / "second").exists()


def test_push_uploads_the_finished_checkpoint(online, bases, models, tmp_path, monkeypatch):
    from huggingface_hub import HfApi, snapshot_download
    from transformers import LlamaForCausalLM

    adapter = make_adapter(models["llama"], _lora(), tmp_path / "a", seed=34)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    with pytest.raises(PublishError, match="token"):
        adapterhub.export([str(adapter)], base=bases["llama"], out=tmp_path / "out", push="alice/merged")
    assert not (tmp_path / "out").exists()
    result = adapterhub.export([str(adapter)], base=bases["llama"], out=tmp_path / "out", push="alice/merged",
                               token=USERS["alice"])
    assert result.pushed["repo_id"] == "alice/merged"
    api = HfApi(endpoint=online.url, token=USERS["alice"])
    assert api.model_info("alice/merged").sha == result.pushed["commit"]
    folder = snapshot_download("alice/merged", endpoint=online.url, token=USERS["alice"], cache_dir=tmp_path / "dl")
    assert result.to_json()["pushed"] == result.pushed
    LlamaForCausalLM.from_pretrained(folder)  # loads with transformers alone
