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
    # types the generic PEFT plugin runs (PEFT's own layers)
    "loha": {"r": 2, "alpha": 4, "target_modules": ["query", "value"]},
    "vera": {"r": 4, "target_modules": ["query", "value"]},
    "oft": {"r": 0, "oft_block_size": 4, "target_modules": ["query", "value"]},
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


@pytest.mark.slow
def test_cli_pushes_a_sequence_classification_lora_and_its_printed_commands_work(hub, base_model_dir, tmp_path,
                                                                                 monkeypatch):
    """The demo's case: a SEQ_CLS LoRA with its classifier, base saved as BertModel, pushed WITH the load
    check; every `adapterhub install` line the push prints then works exactly as printed."""
    import shlex

    import torch
    from transformers import BertForSequenceClassification, BertModel

    from adapterhub import AdapterModel
    from adapterhub.errors import IncompatibleBaseModelError

    torch.manual_seed(0)
    am = AdapterModel(BertForSequenceClassification.from_pretrained(base_model_dir, num_labels=3))
    am.add_adapter("cls", "lora", r=2, target_modules=["query", "value"], modules_to_save=["classifier"],
                   task_type="SEQ_CLS")
    adapter_dir = tmp_path / "cls"
    am.save_adapter(adapter_dir, "cls")
    index_dir = tmp_path / "my-index"
    pushed = run_cli("push", str(adapter_dir), "--repo", "alice/tiny-cls", "--version", "0.1.0",
                     "--name", "alice/tiny-cls", "--base-model", str(base_model_dir), "--endpoint", hub.url,
                     "--index-dir", str(index_dir), token=TOKEN, cwd=tmp_path)
    assert pushed.returncode == 0, pushed.stderr
    assert "as BertForSequenceClassification(num_labels=3)" in pushed.stderr
    commands = [line.split(": ", 1)[1] for line in pushed.stdout.splitlines() if line.lstrip().startswith(("install with:", "or:"))]
    assert len(commands) == 2 and f"--index {index_dir}" in commands[0] and "hf://alice/tiny-cls@v0.1.0" in commands[1]
    for number, command in enumerate(commands):
        args = shlex.split(command)
        assert args[:2] == ["adapterhub", "install"]
        # a fresh shell: no HF_ENDPOINT, no ADAPTERHUB_INDEX (conftest unsets both), an empty store
        env = {"ADAPTERHUB_HOME": str(tmp_path / f"home-{number}")}
        done = run_cli(*args[1:], env=env, cwd=tmp_path)
        assert done.returncode == 0, (command, done.stderr)

    # loaded by registry name onto the wrong class: the error names the adapter as asked, and the fix
    monkeypatch.setenv("ADAPTERHUB_INDEX", str(index_dir))
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    with pytest.raises(IncompatibleBaseModelError) as err:
        AdapterModel(BertModel.from_pretrained(base_model_dir)).load_adapter("alice/tiny-cls@0.1.0")
    assert str(err.value).startswith("alice/tiny-cls@0.1.0 does not fit BertModel")
    assert "installed-v1" not in str(err.value)
    assert "num_labels=3" in err.value.hint


@pytest.mark.slow
def test_push_adapter_writes_no_entry_file_unless_asked(hub, base_model_dir, tmp_path, monkeypatch):
    from adapterhub.publish import push_adapter

    model, _ = _trained(base_model_dir, "lora")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    result = push_adapter(model, "a", "alice/no-entry-file", version="1.0.0", task="feature-extraction",
                          base_model=str(base_model_dir), endpoint=hub.url, token=TOKEN, check=False)
    assert list(work.iterdir()) == []  # nothing dropped into the working directory
    assert result.entry is not None and result.entry["name"] == "alice/no-entry-file" and result.entry_path is None
    asked = tmp_path / "asked.entry.json"
    again = push_adapter(model, "a", "alice/no-entry-file", version="1.0.0", task="feature-extraction",
                         base_model=str(base_model_dir), endpoint=hub.url, token=TOKEN, check=False, entry_out=asked)
    assert again.noop and again.entry_path == asked and asked.is_file() and list(work.iterdir()) == []


def test_adapters_format_push_prints_and_cards_the_adapters_library_load_call(hub, base_model_dir, tmp_path):
    """An AdapterHub-format release: `push` prints the call that loads it in the `adapters` library
    (adapterhub writes safetensors only, and the library's default reads pytorch_adapter.bin), and
    the card shows it with the flex-head class that holds its head."""
    if "bottleneck" not in registered_methods():
        pytest.skip("no bottleneck plugin installed")
    from huggingface_hub import HfApi

    from adapterhub.toolkit.adapters_format.layout import LOAD_CALL

    model, _ = _trained(base_model_dir, "bottleneck")
    model.add_head("a", 2, seed=0)
    adapter_dir = tmp_path / "adapter"
    model.save_adapter(adapter_dir, "a")  # a head: the AdapterHub format
    assert (adapter_dir / "head_config.json").is_file()
    pushed = run_cli("push", str(adapter_dir), "--repo", "alice/tiny-bn", "--version", "0.2.0", "--name", "alice/tiny-bn",
                     "--task", "text-classification", "--base-model", str(base_model_dir), "--endpoint", hub.url,
                     "--index-dir", str(tmp_path / "index"), "--no-check", token=TOKEN, cwd=tmp_path)
    assert pushed.returncode == 0, pushed.stderr
    call = 'model.load_adapter("alice/tiny-bn", version="v0.2.0", use_safetensors=True)'
    assert f"load with the adapters library: {call}" in pushed.stdout
    assert "use_safetensors=True" in LOAD_CALL

    card = HfApi(endpoint=hub.url).hf_hub_download("alice/tiny-bn", "README.md", revision="v0.2.0",
                                                    cache_dir=tmp_path / "cache")
    text = open(card, encoding="utf-8").read()
    assert f"name = {call}" in text and "AutoAdapterModel.from_pretrained" in text
    assert "library_name: adapter-transformers" in text

    # a PEFT-format release prints no such line (PEFT loads it)
    lora, _ = _trained(base_model_dir, "lora")
    lora.save_adapter(tmp_path / "lora", "a")
    peft_push = run_cli("push", str(tmp_path / "lora"), "--repo", "alice/tiny-lora-card", "--version", "0.1.0",
                        "--task", "feature-extraction", "--base-model", str(base_model_dir), "--endpoint", hub.url, "--no-check",
                        token=TOKEN, cwd=tmp_path)
    assert peft_push.returncode == 0, peft_push.stderr
    assert "adapters library" not in peft_push.stdout


def test_generic_peft_type_push_install_and_lock_record_the_type(hub, base_model_dir, tmp_path):
    """A LoHa adapter is published, installed and locked as method "loha" of the generic PEFT plugin,
    with the plugin's name, not as an unknown method; the torch-free install path detects it."""
    import tomllib

    from adapterhub.publish import push_adapter

    model, _ = _trained(base_model_dir, "loha")
    index_dir = tmp_path / "registry_index"
    result = push_adapter(
        model, "a", "alice/tiny-loha-lock", version="1.0.0", name="peft-types/loha", task="sentiment-analysis",
        license="apache-2.0", base_model=str(base_model_dir), endpoint=hub.url, token=TOKEN, index_dir=index_dir,
        entry_out=tmp_path / "entry.json",
    )
    assert result.manifest["method"] == "loha"
    entry = read_json(index_dir / "peft-types" / "loha.json")
    assert json.dumps(entry).count('"loha"') >= 1
    lock = tmp_path / "adapterhub.lock"
    installed = run_cli(
        "install", "peft-types/loha@1.0.0", "--index", str(index_dir), "--endpoint", hub.url, "--lock", str(lock),
        "--json", "-q", env={"ADAPTERHUB_HOME": str(tmp_path / "home")}, cwd=tmp_path,
    )
    assert installed.returncode == 0, installed.stderr
    record = json.loads(installed.stdout)["installed"][0]
    assert record["method"]["name"] == "loha"
    assert record["method"]["plugin"] == "adapterhub.default_plugins.peft_generic"
    locked = tomllib.loads(lock.read_text())["adapter"][0]["method"]
    assert (locked["name"], locked["plugin"]) == ("loha", "adapterhub.default_plugins.peft_generic")
