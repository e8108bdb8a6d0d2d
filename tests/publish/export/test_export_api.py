"""``adapterhub.export``: what it refuses before writing anything, what an interruption leaves (nothing),
the model card and the result, tied copies, QLoRA provenance, BitFit, and adapters from the registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import load, make_adapter, save_base

import adapterhub
from adapterhub.errors import IncompatibleBaseModelError, UnsupportedOperationError, UsageError
from adapterhub.publish.export import writer


def _lora(**kw):
    from peft import LoraConfig

    return LoraConfig(**({"r": 4, "lora_alpha": 8} | kw))


def _nothing_written(out: Path) -> None:
    assert not out.exists()
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")] == []


@pytest.fixture(scope="module")
def llama_lora(models, tmp_path_factory):
    return make_adapter(models["llama"], _lora(target_modules=["q_proj", "v_proj", "down_proj"]),
                        tmp_path_factory.mktemp("llama-lora") / "a", seed=21)


@pytest.mark.parametrize("interrupt", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_an_interrupted_export_leaves_nothing(bases, llama_lora, tmp_path, monkeypatch, interrupt):
    """An exception injected in the middle of a shard: no output folder, no staging folder."""
    calls = []
    original = writer.ShardFile.write

    def failing_write(self, name, tensor):
        calls.append(name)
        if len(calls) == 7:
            assert any(p.name.endswith(".safetensors") for p in self.path.parent.iterdir())  # mid-shard
            raise interrupt
        original(self, name, tensor)

    monkeypatch.setattr(writer.ShardFile, "write", failing_write)
    out = tmp_path / "out"
    with pytest.raises(type(interrupt)):
        adapterhub.export([str(llama_lora)], base=bases["llama-sharded"], out=out, max_shard_size="40KB")
    assert len(calls) == 7
    _nothing_written(out)


def test_a_non_mergeable_method_is_refused_before_anything_is_written(bases, models, llama_lora, tmp_path):
    from peft import PromptTuningConfig

    prompt = tmp_path / "prompt"
    from peft import get_peft_model

    get_peft_model(models["llama"], PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4)).save_pretrained(prompt)
    out = tmp_path / "out"
    with pytest.raises(UnsupportedOperationError, match="prompt_tuning.*cannot be merged"):
        adapterhub.export([str(llama_lora), str(prompt)], base=bases["llama"], out=out)
    _nothing_written(out)


def test_a_type_of_the_generic_peft_plugin_is_refused_by_name_before_anything_is_written(bases, models, tmp_path):
    """A LoHa merges on a model (PEFT's layers do its maths) but has no checkpoint merge: refused, naming it."""
    import copy

    from peft import LoHaConfig, get_peft_model

    loha = tmp_path / "loha"
    get_peft_model(copy.deepcopy(models["llama"]), LoHaConfig(r=2, target_modules=["q_proj", "v_proj"])).save_pretrained(loha)
    out = tmp_path / "out"
    with pytest.raises(UnsupportedOperationError, match="loha.*cannot be merged into a checkpoint"):
        adapterhub.export([str(loha)], base=bases["llama"], out=out)
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_dora_with_a_weight_and_unsupported_variants_are_refused(bases, models, tmp_path):
    dora = make_adapter(models["llama"], _lora(target_modules=["q_proj"], use_dora=True), tmp_path / "dora")
    with pytest.raises(UnsupportedOperationError, match="DoRA.*weight 1"):
        adapterhub.export([str(dora)], base=bases["llama"], out=tmp_path / "out", weights=[0.5])
    config = json.loads((dora / "adapter_config.json").read_text())
    (dora / "adapter_config.json").write_text(json.dumps({**config, "use_dora": False, "layer_replication": [[0, 2]]}))
    with pytest.raises(UnsupportedOperationError, match="layer_replication"):
        adapterhub.export([str(dora)], base=bases["llama"], out=tmp_path / "out")
    _nothing_written(tmp_path / "out")


def test_an_adapter_for_another_model_is_refused_naming_the_tensor(bases, models, llama_lora, tmp_path):
    from adapterhub.testing import tiny_llama

    with pytest.raises(IncompatibleBaseModelError, match="has no parameter .*q_proj"):
        adapterhub.export([str(llama_lora)], base=bases["gpt2"], out=tmp_path / "out")
    wider = make_adapter(tiny_llama(hidden_size=32), _lora(target_modules=["q_proj"]), tmp_path / "wider")
    with pytest.raises(IncompatibleBaseModelError, match=r"q_proj.weight has shape \[64, 64\].*needs \[32, 32\]"):
        adapterhub.export([str(wider)], base=bases["llama"], out=tmp_path / "out")
    _nothing_written(tmp_path / "out")


def test_arguments_are_checked_first(bases, llama_lora, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    with pytest.raises(UsageError, match="already exists"):
        adapterhub.export([str(llama_lora)], base=bases["llama"], out=tmp_path / "taken")
    with pytest.raises(UsageError, match="1 weight.*2 adapter"):
        adapterhub.export([str(llama_lora), str(llama_lora)], base=bases["llama"], out=tmp_path / "o", weights=[1])
    with pytest.raises(UsageError, match="max-shard-size"):
        adapterhub.export([str(llama_lora)], base=bases["llama"], out=tmp_path / "o", max_shard_size="lots")
    with pytest.raises(UsageError, match="no such folder|neither a folder"):
        adapterhub.export([str(llama_lora)], base=tmp_path / "missing", out=tmp_path / "o")
    (tmp_path / "empty").mkdir()  # an empty folder is fine: it is replaced
    adapterhub.export([str(llama_lora)], base=bases["llama"], out=tmp_path / "empty")
    assert (tmp_path / "empty" / "config.json").is_file()


def test_quantized_and_pickled_bases_are_refused(bases, llama_lora, tmp_path):
    quantized = tmp_path / "q"
    quantized.mkdir()
    config = json.loads((bases["llama"] / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True}
    (quantized / "config.json").write_text(json.dumps(config))
    with pytest.raises(IncompatibleBaseModelError, match="quantized.*full-precision"):
        adapterhub.export([str(llama_lora)], base=quantized, out=tmp_path / "out")
    pickled = tmp_path / "p"
    pickled.mkdir()
    (pickled / "config.json").write_text((bases["llama"] / "config.json").read_text())
    torch.save({"x": torch.zeros(1)}, pickled / "pytorch_model.bin")
    with pytest.raises(IncompatibleBaseModelError, match="(?s)pytorch_model.bin.*convert"):
        adapterhub.export([str(llama_lora)], base=pickled, out=tmp_path / "out")


def test_card_config_tokenizer_and_result(bases, llama_lora, tmp_path):
    from adapterhub.client import sha256_file

    base = tmp_path / "base"
    base.mkdir()
    for f in Path(bases["llama"]).iterdir():
        (base / f.name).write_bytes(f.read_bytes())
    (base / "tokenizer_config.json").write_text('{"model_max_length": 64}')
    (base / "notes.txt").write_text("not copied")
    result = adapterhub.export([str(llama_lora)], base=base, out=tmp_path / "out", weights=[0.5])
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "generation_config.json",
                                                      "model.safetensors", "tokenizer_config.json"]
    assert (out / "config.json").read_bytes() == (base / "config.json").read_bytes()  # dtype unchanged: as is
    card = (out / "README.md").read_text()
    sha = sha256_file(llama_lora / "adapter_model.safetensors")
    assert sha in card and str(base) in card and "| 0.5 |" in card and "LlamaForCausalLM" in card
    data = result.to_json()
    assert data["adapters"][0]["sha256"] == sha and data["adapters"][0]["weight"] == 0.5
    assert data["adapters"][0]["name"] == "a" and data["adapters"][0]["method"] == "lora"
    assert data["merged_tensors"] == 6  # q, v, down in 2 layers
    assert data["base"]["architecture"] == "LlamaForCausalLM" and data["dtype"] == "float32"


def test_a_checkpoint_storing_both_tied_copies_writes_one(models, tmp_path):
    """Some checkpoints store lm_head.weight beside the embedding it is tied to; it is written once."""
    from safetensors.torch import load_file, save_file
    from transformers import GPT2LMHeadModel

    base = save_base(models["gpt2"], tmp_path / "base")
    tensors = load_file(str(base / "model.safetensors"))
    tensors["lm_head.weight"] = tensors["transformer.wte.weight"].clone()
    save_file(tensors, str(base / "model.safetensors"), metadata={"format": "pt"})
    adapter = make_adapter(models["gpt2"], _lora(target_modules=["lm_head", "c_attn"]), tmp_path / "a", seed=22)
    result = adapterhub.export([str(adapter)], base=base, out=tmp_path / "out")
    assert result.plan.dropped == {"lm_head.weight": "transformer.wte.weight"}
    written = load_file(str(tmp_path / "out" / "model.safetensors"))
    assert "lm_head.weight" not in written
    ours = GPT2LMHeadModel.from_pretrained(str(tmp_path / "out"))
    assert ours.lm_head.weight.data_ptr() == ours.transformer.wte.weight.data_ptr()
    assert not torch.equal(written["transformer.wte.weight"], tensors["transformer.wte.weight"])


def test_bitfit_moves_each_bias_by_its_weighted_delta(bases, models, tmp_path):
    from safetensors.torch import save_file
    from transformers import BertForSequenceClassification

    base_sd = load(BertForSequenceClassification, bases["bert-cls"]).state_dict()
    keys = ["bert.encoder.layer.0.attention.self.query.bias", "classifier.bias", "bert.pooler.dense.bias"]
    trained = {k: base_sd[k] + torch.randn(base_sd[k].shape) for k in keys}
    folder = tmp_path / "bitfit"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"adapterhub_method": "bitfit", "target_biases": keys}))
    save_file(trained, str(folder / "adapter_model.safetensors"))
    adapterhub.export([str(folder)], base=bases["bert-cls"], out=tmp_path / "w1")
    adapterhub.export([str(folder)], base=bases["bert-cls"], out=tmp_path / "w03", weights=[0.3])
    one = load(BertForSequenceClassification, tmp_path / "w1").state_dict()
    part = load(BertForSequenceClassification, tmp_path / "w03").state_dict()
    for key, value in base_sd.items():
        if key in trained:
            assert torch.equal(one[key], trained[key])  # weight 1: exactly the trained bias
            assert torch.allclose(part[key], value + 0.3 * (trained[key] - value), atol=1e-6)
        else:
            assert torch.equal(one[key], value) and torch.equal(part[key], value)


def test_bitfit_export_matches_the_runtime_merge(bert, bert_inputs, tmp_path):
    """Cross-check with AdapterModel: a trained BitFit merged in memory and saved equals the export."""
    from transformers import BertModel

    from adapterhub import AdapterModel

    base = save_base(bert, tmp_path / "base")
    am = AdapterModel(BertModel.from_pretrained(str(base)).eval())
    am.add_adapter("bf", "bitfit")
    with torch.no_grad():
        for p in get_params(am, "bf"):
            p.add_(torch.randn(p.shape) * 0.1)
    am.save_adapter(tmp_path / "bf", "bf")
    am.set_adapter("bf")
    merged = am.merge_and_unload()
    adapterhub.export([str(tmp_path / "bf")], base=base, out=tmp_path / "out")
    ours = BertModel.from_pretrained(str(tmp_path / "out")).eval()
    assert all(torch.equal(ours.state_dict()[k], v) for k, v in merged.state_dict().items())


def get_params(am, name):
    from adapterhub.plugin import get_method

    return get_method("bitfit").parameters(am.model, name)


def test_a_qlora_trained_on_a_4bit_base_exports_onto_the_full_precision_one(bases, models, tmp_path):
    """A LoRA trained with AdapterModel on a quantize_4bit base (method qlora) records its 4-bit
    settings when saved; exported onto the full-precision base it is a plain LoRA merge, and the
    card says it was trained against quantized weights."""
    pytest.importorskip("bitsandbytes")
    from peft import PeftModel
    from transformers import LlamaForCausalLM

    from adapterhub import AdapterModel, quantize_4bit

    am = AdapterModel(quantize_4bit(load(LlamaForCausalLM, bases["llama"]), "nf4"))
    am.add_adapter("q", _lora(target_modules=["q_proj", "v_proj"]))
    assert am.adapters["q"].method == "qlora"
    with torch.no_grad():
        for name, p in am.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    am.save_adapter(tmp_path / "q", "q")
    assert "load_in_4bit: True" in (tmp_path / "q" / "README.md").read_text()
    result = adapterhub.export([str(tmp_path / "q")], base=bases["llama"], out=tmp_path / "out")
    assert result.adapters[0].quantized_training == "bitsandbytes 4-bit (nf4)"
    assert any("quantized" in n for n in result.notes)
    card = (tmp_path / "out" / "README.md").read_text()
    assert "## Trained against quantized weights" in card and "bitsandbytes 4-bit (nf4)" in card
    reference = PeftModel.from_pretrained(load(LlamaForCausalLM, bases["llama"]), str(tmp_path / "q")).merge_and_unload()
    ours = load(LlamaForCausalLM, tmp_path / "out")
    assert all(torch.allclose(ours.state_dict()[k], v, atol=1e-6) for k, v in reference.state_dict().items())


def test_qlora_provenance_from_peft_readme_and_from_the_named_base(bases, llama_lora, tmp_path):
    from adapterhub.publish.export.plan import quantized_training

    old_peft = tmp_path / "old"
    old_peft.mkdir()
    (old_peft / "README.md").write_text(
        "## Training procedure\n\n\nThe following `bitsandbytes` quantization config was used during training:\n"
        "- quant_method: bitsandbytes\n- load_in_8bit: False\n- load_in_4bit: True\n- bnb_4bit_quant_type: fp4\n")
    assert quantized_training(old_peft, {}) == "bitsandbytes 4-bit (fp4)"
    named = tmp_path / "named-base"
    named.mkdir()
    (named / "config.json").write_text(json.dumps({"quantization_config": {"quant_method": "bitsandbytes",
                                                                          "load_in_4bit": True}}))
    assert quantized_training(tmp_path, {"base_model_name_or_path": str(named)}) == "bitsandbytes 4-bit"
    assert quantized_training(llama_lora, json.loads((llama_lora / "adapter_config.json").read_text())) is None


def test_adapters_from_the_registry_are_installed_verified_and_recorded(bases, models, tmp_path, monkeypatch):
    """A registry name resolves through the index and the Hub (the client's verified install); the card
    records its name, version, commit and the sha256 of its weights."""
    from huggingface_hub import HfApi

    from adapterhub.server.testing import running_hub

    adapter = make_adapter(models["llama"], _lora(target_modules=["q_proj"]), tmp_path / "src", seed=23)
    with running_hub(tmp_path / "hub", {"alice": "tok"}) as hub:
        api = HfApi(endpoint=hub.url, token="tok")
        api.create_repo("alice/llama-lora")
        commit = api.upload_folder(repo_id="alice/llama-lora", folder_path=adapter).oid
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        index = tmp_path / "index"
        files = [{"path": p.name, "size": p.stat().st_size, "sha256": adapterhub.client.sha256_file(p)}
                 for p in sorted(adapter.iterdir())]
        entry = {"schema_version": 1, "name": "test/llama-lora", "namespace": "test", "task": "text-generation",
                 "method": "lora", "license": "mit", "description": "x", "tags": [],
                 "base_model": {"repo_id": "tiny/llama", "revision": None, "model_type": "llama"},
                 "versions": {"1.2.0": {"source": {"type": "hf", "repo_id": "alice/llama-lora", "tag": None,
                                                   "revision": commit}, "files": files}}}
        (index / "test").mkdir(parents=True)
        (index / "test" / "llama-lora.json").write_text(json.dumps(entry))
        monkeypatch.setenv("ADAPTERHUB_INDEX", str(index))
        result = adapterhub.export(["test/llama-lora@1.2.0", "alice/llama-lora"], base=bases["llama"],
                                   out=tmp_path / "out", weights=[0.5, 0.5])
    first, second = result.adapters
    assert (first.name, first.version, first.commit) == ("test/llama-lora", "1.2.0", commit)
    assert (second.name, second.version, second.commit, second.repo_id) == ("alice/llama-lora", None, commit,
                                                                            "alice/llama-lora")
    card = (tmp_path / "out" / "README.md").read_text()
    assert f"| 1 | `test/llama-lora` | 1.2.0 | lora | 0.5 | `{commit}` |" in card
