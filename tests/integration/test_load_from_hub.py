"""``AdapterModel.load_adapter`` on registry names and Hub repo ids: installed and verified by the
client, loaded from the store, equal to PEFT on the same files; offline reuse; tampering refused."""

from __future__ import annotations

import os

import pytest
import torch
from integration_support import REGISTRY_NAME, REPO, TOKEN, file_list, forbid_network, hidden, peft_output

from adapterhub import AdapterModel
from adapterhub.client import Client
from adapterhub.errors import IntegrityError, OfflineError, ResolutionError, UsageError


def _installed_dirs():
    return {r.commit: r.directory for r in Client().installed()}


def test_registry_name_installs_verifies_and_matches_peft(hub_env, inputs):
    w = hub_env
    am = AdapterModel(w.fresh_base())
    name = am.load_adapter(f"{REGISTRY_NAME}@>=1")
    assert name == "tiny-lora" and am.adapters[name].source == f"{REGISTRY_NAME}@>=1"
    # installed into the store, pinned to the tagged commit, with exactly the uploaded bytes
    store_dir = _installed_dirs()[w.commits["v1"]]
    assert file_list(store_dir) == file_list(w.v1)
    am.set_adapter(name)
    expected = peft_output(w.fresh_base(), store_dir, inputs)
    torch.testing.assert_close(hidden(am, inputs), expected, atol=0, rtol=0)
    assert not torch.equal(expected, hidden(w.fresh_base(), inputs))  # the adapter does change the output


def test_repo_id_revisions_pin_the_right_commit(hub_env, inputs):
    w = hub_env
    am = AdapterModel(w.fresh_base())
    am.load_adapter(f"{REPO}@v1.0.0", name="tagged")
    am.load_adapter(f"hf://{REPO}", name="main")
    am.load_adapter(REPO, name="by_sha", revision=w.commits["v1"])
    expected_v1 = peft_output(w.fresh_base(), w.v1, inputs)
    expected_v2 = peft_output(w.fresh_base(), w.v2, inputs)
    for name, expected in (("tagged", expected_v1), ("main", expected_v2), ("by_sha", expected_v1)):
        am.set_adapter(name)
        torch.testing.assert_close(hidden(am, inputs), expected, atol=0, rtol=0, msg=name)
    assert set(_installed_dirs()) == {w.commits["v1"], w.commits["v2"]}


def test_offline_load_after_install_uses_no_network(hub_env, inputs, monkeypatch):
    w = hub_env
    AdapterModel(w.fresh_base()).load_adapter(f"{REGISTRY_NAME}@1.0.0")
    AdapterModel(w.fresh_base()).load_adapter(f"{REPO}@v1.0.0")
    # now offline, with the Hub unreachable and every socket connection an error
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    forbid_network(monkeypatch)
    am = AdapterModel(w.fresh_base())
    am.load_adapter(f"{REGISTRY_NAME}@1.0.0", name="reg")
    am.load_adapter(f"{REPO}@v1.0.0", name="repo")
    expected = peft_output(w.fresh_base(), w.v1, inputs)
    for name in ("reg", "repo"):
        am.set_adapter(name)
        torch.testing.assert_close(hidden(am, inputs), expected, atol=0, rtol=0)
    # offline and never installed: a clear error, still without touching the network
    with pytest.raises(OfflineError, match="offline"):
        am.load_adapter(f"{REPO}@some-branch", name="never")
    assert "never" not in am.adapters


def test_tampered_store_file_is_refused(hub_env, inputs):
    w = hub_env
    AdapterModel(w.fresh_base()).load_adapter(f"{REGISTRY_NAME}@1.0.0")
    weights = _installed_dirs()[w.commits["v1"]] / "adapter_model.safetensors"
    os.chmod(weights, 0o644)
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit of one weight: same size, different sha256
    weights.write_bytes(bytes(data))
    model = w.fresh_base()
    am = AdapterModel(model)
    with pytest.raises(IntegrityError) as err:
        am.load_adapter(f"{REGISTRY_NAME}@1.0.0")
    assert "adapter_model.safetensors" in str(err.value) and "sha256" in str(err.value)
    assert am.adapters == {} and not hasattr(model, "peft_config")


def test_unresolvable_source_says_what_was_tried(hub_env):
    am = AdapterModel(hub_env.fresh_base())
    with pytest.raises(ResolutionError) as err:
        am.load_adapter("nobody/nothing-here")
    message = str(err.value)
    assert "tried" in message and "local directory" in message and "does not exist" in message
    assert str(hub_env.index_dir) in message and hub_env.url in message
    with pytest.raises(UsageError, match="not a registry name, a Hub repo id or an existing directory"):
        am.load_adapter("not a name!")
    assert am.adapters == {}


def test_push_adapter_publishes_a_release_that_loads_back(hub_env, inputs, tmp_path, monkeypatch):
    w = hub_env
    am = AdapterModel(w.fresh_base())
    am.load_adapter(w.v2, name="mine")
    am.set_adapter("mine")
    expected = hidden(am, inputs)
    index_dir = tmp_path / "index"
    import adapterhub

    result = adapterhub.push_adapter(
        am, "mine", "alice/pushed-lora", version="1.0.0", name="tiny/pushed-lora", task="feature-extraction",
        license="apache-2.0", base_model="testing/tiny-bert", token=TOKEN, endpoint=w.url, index_dir=index_dir,
        entry_out=tmp_path / "entry.json", check=False,
    )
    assert result.commit and result.tag == "v1.0.0" and result.name == "tiny/pushed-lora"
    monkeypatch.setenv("ADAPTERHUB_INDEX", str(index_dir))
    other = AdapterModel(w.fresh_base())
    other.set_adapter(other.load_adapter("tiny/pushed-lora@1.0.0"))
    torch.testing.assert_close(hidden(other, inputs), expected, atol=0, rtol=0)
