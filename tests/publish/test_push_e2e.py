"""End to end: train tiny adapters, push them to a local Hub (real huggingface_hub client), check the
release with the plain client, install them by name through the written index, and reload them."""

from __future__ import annotations

import json
import re

import pytest
from publish_helpers import BASE_REPO, USERS, read_json, run_cli

from adapterhub.plugin.registry import registered_methods

# One small trainable config per method family; families whose plugin is not installed are skipped.
METHOD_CONFIGS = {
    "lora": {"r": 4, "lora_alpha": 8, "target_modules": ["query", "value"]},
    "ia3": {"target_modules": ["key", "value", "output.dense"], "feedforward_modules": ["output.dense"]},
    "bottleneck": {"preset": "seq_bn", "reduction_factor": 4},
    "prompt_tuning": {"num_virtual_tokens": 4},
    "bitfit": {},
}
TOKEN = USERS["alice"]


def _inputs():
    import torch

    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(1, 120, (2, 7), generator=generator)
    mask = torch.ones_like(input_ids)
    mask[1, 5:] = 0
    return {"input_ids": input_ids, "attention_mask": mask}


def _trained(base_model_dir, method: str):
    """An AdapterModel with adapter "a" of ``method`` after two optimizer steps, and its output."""
    import torch
    from transformers import BertModel

    from adapterhub import AdapterModel

    torch.manual_seed(0)
    model = AdapterModel(BertModel.from_pretrained(base_model_dir))
    model.add_adapter("a", method, **METHOD_CONFIGS[method])
    model.set_adapter("a")
    model.train()
    from adapterhub.plugin import get_method

    params = get_method(method).parameters(model.model, "a")  # only the adapter's own weights
    optimizer = torch.optim.Adam(params, lr=0.05)
    for _ in range(2):
        loss = model(**_inputs()).last_hidden_state.pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    with torch.no_grad():
        return model, model(**_inputs()).last_hidden_state


def _reloaded_output(base_model_dir, source: str):
    import torch
    from transformers import BertModel

    from adapterhub import AdapterModel

    model = AdapterModel(BertModel.from_pretrained(base_model_dir))
    model.set_adapter(model.load_adapter(source, name="b"))
    model.eval()
    with torch.no_grad():
        return model(**_inputs()).last_hidden_state


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(METHOD_CONFIGS))
def test_push_install_and_reload_each_method(method, hub, base_model_dir, tmp_path, monkeypatch):
    if method not in registered_methods():
        pytest.skip(f"no {method} plugin installed")
    import torch
    from huggingface_hub import HfApi

    from adapterhub.publish import push_adapter

    model, expected = _trained(base_model_dir, method)
    with torch.no_grad():
        with model.disable_adapter():
            base_output = model(**_inputs()).last_hidden_state
    # the trained adapter does something (prompt methods also add positions)
    assert expected.shape != base_output.shape or not torch.allclose(expected, base_output)

    index_dir = tmp_path / "registry_index"
    repo = f"alice/tiny-{method}"
    result = push_adapter(
        model, "a", repo, version="1.0.0", task="sentiment-analysis", license="apache-2.0",
        base_model=str(base_model_dir), endpoint=hub.url, token=TOKEN, index_dir=index_dir,
        entry_out=tmp_path / "entry.json",
    )
    assert result.load_checked and not result.noop
    assert re.fullmatch(r"[0-9a-f]{40}", result.commit)
    assert result.manifest["method"] == method
    assert result.manifest["base_model"]["repo_id"] == BASE_REPO
    refs = HfApi(endpoint=hub.url).list_repo_refs(repo)
    assert {t.name: t.target_commit for t in refs.tags} == {"v1.0.0": result.commit}

    # install by name through the written index, then load: same output as the model in memory
    monkeypatch.setenv("ADAPTERHUB_INDEX", str(index_dir))
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    reloaded = _reloaded_output(base_model_dir, f"alice/tiny-{method}@1.0.0")
    # Publishing must preserve the adapter exactly: same output as reloading a local save...
    local_dir = tmp_path / "local-save"
    model.save_adapter(local_dir, "a", format=result.manifest["format"])
    assert torch.equal(reloaded, _reloaded_output(base_model_dir, str(local_dir)))
    # ...and the same output as the trained model in memory.
    assert torch.equal(reloaded, expected)


@pytest.mark.slow
def test_cli_push_release_card_index_repush_and_conflict(hub, base_model_dir, tmp_path):
    if "lora" not in registered_methods():
        pytest.skip("no lora plugin installed")
    from huggingface_hub import HfApi
    import torch
    from huggingface_hub.repocard import metadata_load

    from adapterhub.client.hashing import sha256_file
    from adapterhub.client.authoring import entry_problems
    from adapterhub.plugin import get_method

    model, expected = _trained(base_model_dir, "lora")
    adapter_dir = tmp_path / "adapter"
    model.save_adapter(adapter_dir, "a")
    index_dir = tmp_path / "registry_index"
    args = [
        "push", str(adapter_dir), "--repo", "alice/minilm-sst", "--version", "1.0.0", "--name", "sentiment/tiny-sst",
        "--task", "sentiment-analysis", "--license", "apache-2.0", "--description", "A tiny test adapter.",
        "--metric", "accuracy=0.5", "--base-model", str(base_model_dir), "--endpoint", hub.url,
        "--index-dir", str(index_dir), "--json",
    ]
    pushed = run_cli(*args, token=TOKEN, cwd=tmp_path)
    assert pushed.returncode == 0, pushed.stderr
    out = json.loads(pushed.stdout)
    commit = out["commit"]
    assert out["tag"] == "v1.0.0" and out["load_checked"] and re.fullmatch(r"[0-9a-f]{40}", commit)
    assert "uploading" in pushed.stderr and "tagging" in pushed.stderr  # progress on stderr
    assert TOKEN not in pushed.stdout + pushed.stderr

    # the release as the plain huggingface_hub client sees it
    api = HfApi(endpoint=hub.url)
    assert {t.name: t.target_commit for t in api.list_repo_refs("alice/minilm-sst").tags} == {"v1.0.0": commit}
    files = set(api.list_repo_files("alice/minilm-sst", revision="v1.0.0"))
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md", "adapterhub.json"} <= files
    cache = tmp_path / "plain-client"
    card = api.hf_hub_download("alice/minilm-sst", "README.md", revision="v1.0.0", cache_dir=cache)
    meta = metadata_load(card)
    assert meta["library_name"] == "peft" and meta["base_model"] == BASE_REPO and meta["license"] == "apache-2.0"
    assert {"adapterhub", "lora"} <= set(meta["tags"])
    card_text = open(card, encoding="utf-8").read()
    assert "adapterhub install sentiment/tiny-sst@1.0.0" in card_text and "load_adapter(" in card_text
    manifest = read_json(api.hf_hub_download("alice/minilm-sst", "adapterhub.json", revision=commit, cache_dir=cache))
    assert manifest["name"] == "sentiment/tiny-sst" and manifest["metrics"] == {"accuracy": 0.5}
    assert manifest["base_model"]["revision"] == base_model_dir.name  # the cached snapshot's commit

    # the registry entry: standalone file and the index dir agree, valid, every file of the commit
    entry = read_json(tmp_path / "tiny-sst-1.0.0.entry.json")
    assert entry == read_json(index_dir / "sentiment" / "tiny-sst.json")
    assert entry_problems(entry, "entry") == []
    version = entry["versions"]["1.0.0"]
    assert version["source"] == {"type": "hf", "repo_id": "alice/minilm-sst", "tag": "v1.0.0", "revision": commit}
    assert {f["path"] for f in version["files"]} == files - {".gitattributes"}  # the Hub's, no adapter file
    for record in version["files"]:
        local = api.hf_hub_download("alice/minilm-sst", record["path"], revision=commit, cache_dir=cache)
        assert sha256_file(local) == record["sha256"], record["path"]
        assert TOKEN not in open(local, encoding="utf-8", errors="replace").read()
    assert (index_dir / "index.json").is_file()

    # `adapterhub install` by name through that index, then load the installed copy: same output
    installed = run_cli(
        "install", "sentiment/tiny-sst@1.0.0", "--index", str(index_dir), "--endpoint", hub.url, "--json", "-q",
        env={"ADAPTERHUB_HOME": str(tmp_path / "home")}, cwd=tmp_path,
    )
    assert installed.returncode == 0, installed.stderr
    record = json.loads(installed.stdout)["installed"][0]
    assert record["version"] == "1.0.0" and record["method"]["name"] == "lora"
    assert torch.equal(_reloaded_output(base_model_dir, record["path"]), expected)

    # the same version again: a no-op on the Hub and in the index
    again = run_cli(*args, "--no-check", token=TOKEN, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["noop"] is True and json.loads(again.stdout)["commit"] == commit
    assert read_json(index_dir / "sentiment" / "tiny-sst.json") == entry
    assert len(api.list_repo_commits("alice/minilm-sst")) == 1 + 1  # initial commit + the release

    # changed weights under the same version: refused; under a new version: accepted
    with torch.no_grad():
        get_method("lora").parameters(model.model, "a")[0].add_(0.01)
    changed_dir = tmp_path / "changed"
    model.save_adapter(changed_dir, "a")
    changed = [a if a != str(adapter_dir) else str(changed_dir) for a in args]
    refused = run_cli(*changed, "--no-check", token=TOKEN, cwd=tmp_path)
    assert refused.returncode == 1
    assert "already exists" in refused.stderr and "adapter_model.safetensors" in refused.stderr
    assert "bump --version" in refused.stderr
    bumped = run_cli(*[a if a != "1.0.0" else "1.1.0" for a in changed], "--no-check", token=TOKEN, cwd=tmp_path)
    assert bumped.returncode == 0, bumped.stderr
    assert sorted(read_json(index_dir / "sentiment" / "tiny-sst.json")["versions"]) == ["1.0.0", "1.1.0"]


@pytest.mark.slow
def test_push_without_token_and_private_push(hub, base_model_dir, tmp_path):
    if "lora" not in registered_methods():
        pytest.skip("no lora plugin installed")
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    from adapterhub.publish import push_directory

    model, _ = _trained(base_model_dir, "lora")
    adapter_dir = tmp_path / "adapter"
    model.save_adapter(adapter_dir, "a")

    no_token = run_cli(
        "push", str(adapter_dir), "--repo", "alice/x", "--version", "1.0.0", "--task", "t",
        "--endpoint", hub.url, "--no-check", cwd=tmp_path,
    )
    assert no_token.returncode == 1
    assert "HF_TOKEN" in no_token.stderr and "--token" in no_token.stderr

    result = push_directory(
        adapter_dir, repo_id="alice/secret-lora", version="0.1.0", task="sentiment-analysis", private=True,
        base_model=str(base_model_dir), check=False, endpoint=hub.url, token=TOKEN,
        entry_out=tmp_path / "secret.entry.json",
    )
    assert result.private
    for anonymous in (HfApi(endpoint=hub.url, token=False), HfApi(endpoint=hub.url, token=USERS["bob"])):
        with pytest.raises(RepositoryNotFoundError):
            anonymous.model_info("alice/secret-lora")
    owner = HfApi(endpoint=hub.url, token=TOKEN)
    assert owner.model_info("alice/secret-lora").private is True
    assert [t.name for t in owner.list_repo_refs("alice/secret-lora").tags] == ["v0.1.0"]
