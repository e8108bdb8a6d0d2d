"""AdapterHub-format reading/writing and lossless LoRA / IA3 / prefix conversions."""

from __future__ import annotations

import json

import pytest
import torch
from support.fixtures import ADAPTERS, FIXTURES, PEFT, load_reference

from adapterhub.errors import NoMethodClaimsError, PickleRefusedError
from adapterhub.default_plugins.bottleneck import adapters_format as bottleneck_format
from adapterhub.default_plugins.prompt_learning import adapters_format as prompt_format
from adapterhub.toolkit.adapters_format import heads, layout
from adapterhub.toolkit.peft import adapters_lora
from adapterhub.plugin import AdapterFiles, detect_method, read_adapter_config

#: compared with outputs PEFT or `adapters` produced: run by .ci/compat on every transformers release
pytestmark = pytest.mark.fidelity


def test_detection_and_architecture():
    assert layout.is_adapters_format(read_adapter_config(ADAPTERS / "seq_bn"))
    assert not layout.is_adapters_format(read_adapter_config(PEFT / "prompt_tuning"))
    assert layout.architecture(read_adapter_config(ADAPTERS / "seq_bn")) == "bottleneck"
    assert layout.architecture(read_adapter_config(ADAPTERS / "lora")) == "lora"
    assert detect_method(ADAPTERS / "seq_bn").name == "bottleneck"
    assert detect_method(ADAPTERS / "prefix_tuning").name == "prefix_tuning"


def test_pickle_refused_names_file_and_fix():
    with pytest.raises(PickleRefusedError) as info:
        adapters_lora.read_adapters_lora(ADAPTERS / "lora", read_adapter_config(ADAPTERS / "lora"), allow_pickle=False)
    assert "pytorch_adapter.bin" in str(info.value) and "allow_pickle" in str(info.value)


def test_lora_pickle_and_safetensors_agree_and_round_trip(tmp_path):
    cfg = read_adapter_config(ADAPTERS / "lora")
    a = adapters_lora.read_adapters_lora(ADAPTERS / "lora", cfg, allow_pickle=True)
    b = adapters_lora.read_adapters_lora(ADAPTERS / "lora_safetensors", read_adapter_config(ADAPTERS / "lora_safetensors"))
    assert a.method == "lora" and a.config["peft_type"] == "LORA"
    assert a.config["r"] == 4 and a.config["lora_alpha"] == 8
    assert "encoder.layer.0.attention.self.query.lora_A.weight" in a.state_dict
    assert set(a.state_dict) == set(b.state_dict)
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)
    adapters_lora.write_adapters_lora(a, tmp_path / "rt", "bert")
    written = json.loads((tmp_path / "rt" / "adapter_config.json").read_text())
    assert written["config"] == cfg["config"] and written["name"] == "lora"
    raw_original = torch.load(ADAPTERS / "lora" / "pytorch_adapter.bin", weights_only=True)
    from safetensors.torch import load_file

    raw_written = load_file(str(tmp_path / "rt" / "adapter.safetensors"))
    assert set(raw_written) == set(raw_original)
    assert all(torch.equal(raw_written[k], raw_original[k]) for k in raw_original)
    c = adapters_lora.read_adapters_lora(tmp_path / "rt", written)
    assert c.config == a.config and all(torch.equal(c.state_dict[k], a.state_dict[k]) for k in a.state_dict)


def test_ia3_round_trip_is_lossless(tmp_path):
    g = torch.Generator().manual_seed(0)
    sd = {f"encoder.layer.{i}.attention.self.{m}.ia3_l": torch.rand(64, 1, generator=g)
          for i in range(2) for m in ("key", "value")}
    sd.update({f"encoder.layer.{i}.intermediate.dense.ia3_l": torch.rand(128, 1, generator=g) for i in range(2)})
    files = AdapterFiles("ia3", {"peft_type": "IA3", "target_modules": ["key", "value", "dense"],
                                 "feedforward_modules": []}, sd, extras={"adapters_meta": {"name": "ia3",
                                                                                          "hidden_size": 64}})
    adapters_lora.write_adapters_lora(files, tmp_path / "ia3", "bert")
    cfg = read_adapter_config(tmp_path / "ia3")
    assert cfg["config"]["composition_mode"] == "scale" and cfg["config"]["intermediate_lora"] is True
    assert sorted(cfg["config"]["attn_matrices"]) == ["k", "v"]
    back = adapters_lora.read_adapters_lora(tmp_path / "ia3", cfg)
    assert back.method == "ia3" and back.config["peft_type"] == "IA3"
    assert set(back.state_dict) == set(sd) and all(torch.equal(back.state_dict[k], sd[k]) for k in sd)


def test_lora_fixture_through_lora_method(bert):
    """adapters-1.3.0/lora(+_safetensors) reproduced through the LoRA method."""
    from adapterhub import AdapterModel

    try:
        method = detect_method(ADAPTERS / "lora_safetensors", bert)
    except NoMethodClaimsError:
        pytest.skip("no installed LoRA plugin claims AdapterHub-format LoRA yet")
    assert method.name == "lora"
    for case, pickle in (("lora", True), ("lora_safetensors", False)):
        ref = load_reference(ADAPTERS / case)
        am = AdapterModel(bert)
        am.load_adapter(ADAPTERS / case, name="l", allow_pickle=pickle)
        am.set_adapter("l")
        with torch.no_grad():
            out = am(input_ids=ref["input_ids"], attention_mask=ref["attention_mask"]).last_hidden_state
        assert torch.allclose(out, ref["expected"], atol=1e-5, rtol=0)
        am.unload()


def test_prefix_tuning_adapters_round_trip(bert, tmp_path):
    """The MLP-reparameterised prefix is folded on read and written back as a flat prefix."""
    from adapterhub import AdapterModel

    ref = load_reference(ADAPTERS / "prefix_tuning")
    am = AdapterModel(bert)
    am.load_adapter(ADAPTERS / "prefix_tuning", name="prefix", allow_pickle=True)
    am.save_adapter(tmp_path / "flat", "prefix", format="adapters")
    cfg = read_adapter_config(tmp_path / "flat")
    assert cfg["config"]["flat"] is True and cfg["config"]["architecture"] == "prefix_tuning"
    am.unload()
    am.load_adapter(tmp_path / "flat", name="again")
    am.set_adapter("again")
    with torch.no_grad():
        out = am(input_ids=ref["input_ids"], attention_mask=ref["attention_mask"]).last_hidden_state
    assert torch.allclose(out, ref["expected"], atol=1e-5, rtol=0)


def test_prompt_tuning_adapters_format_round_trip(tmp_path):
    emb = torch.randn(4, 64)
    files = AdapterFiles("prompt_tuning", {"peft_type": "PROMPT_TUNING", "num_virtual_tokens": 4, "token_dim": 64},
                         {"prompt_embeddings": emb}, format="adapters",
                         extras={"adapters_meta": {"name": "prompt", "hidden_size": 64}})
    prompt_format.write_adapters_prompt(files, tmp_path / "p", "bert")
    cfg = read_adapter_config(tmp_path / "p")
    # PromptTuningConfig's fields in adapters 1.3.0 (random_uniform_scale is a class attribute, never saved)
    assert sorted(cfg["config"]) == ["architecture", "combine", "init_weights_seed", "prompt_init",
                                     "prompt_init_text", "prompt_length"]
    back = prompt_format.read_adapters_prompt(tmp_path / "p", cfg)
    assert back.extras["prompt_position"] == "after_embeddings"
    assert torch.equal(back.state_dict["prompt_embeddings"], emb)


def test_rebase_keys_for_wrapper_models():
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    config = BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
                        vocab_size=50)
    sd = {"encoder.layer.0.attention.self.query.lora_A.weight": torch.zeros(1)}
    assert layout.rebase_keys(sd, BertModel(config)) == sd
    assert list(layout.rebase_keys(sd, BertForSequenceClassification(config))) == [
        "bert.encoder.layer.0.attention.self.query.lora_A.weight"]


def _with_static_head(case_name: str, target, model, change: float):
    """A copy of a real adapters-1.3.0 case with a static head (``head_config.json`` ``"config": null``,
    as adapters writes beside adapters saved from a fixed-head class) holding the model's own
    ``pooler.dense.weight`` plus ``change``."""
    import shutil

    from safetensors.torch import save_file

    shutil.copytree(ADAPTERS / case_name, target)
    head_config = json.loads((ADAPTERS / "gpt2_seq_bn" / "head_config.json").read_text())
    head_config.update(model_class=type(model).__name__, model_type="bert")
    (target / "head_config.json").write_text(json.dumps(head_config))
    own = model.state_dict()["pooler.dense.weight"].clone()
    save_file({"pooler.dense.weight": own + change}, str(target / "model_head.safetensors"))
    return target


@pytest.mark.parametrize(("case_name", "method"), [("lora_safetensors", "lora"), ("ia3", "ia3"),
                                                   ("prompt_tuning", "prompt_tuning")])
def test_adapters_format_static_head_checked_by_every_method(tmp_path, case_name, method):
    from transformers import BertModel

    from adapterhub import AdapterModel
    from adapterhub.errors import UnsupportedOperationError

    model = BertModel.from_pretrained(str(FIXTURES / "base" / "tiny-bert")).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    changed = _with_static_head(case_name, tmp_path / "changed", model, 1.0)
    assert detect_method(changed).name == method
    am = AdapterModel(model)
    with pytest.raises(UnsupportedOperationError, match=r"pooler\.dense\.weight.*differs") as info:
        am.load_adapter(changed, name="a")
    assert "model_head.safetensors" in str(info.value)
    assert not am.adapters
    after = model.state_dict()
    assert set(after) == set(before) and all(torch.equal(after[k], before[k]) for k in before)
    # The model's own head saved beside the adapter (the usual case) is accepted.
    same = _with_static_head(case_name, tmp_path / "same", model, 0.0)
    assert am.load_adapter(same, name="b") == "b"
    assert am.adapters


def test_gpt2_static_head_checked_by_key_lookup_not_state_dict(gpt2, tmp_path, monkeypatch):
    """adapters 1.3.0 saved GPT2LMHeadModel's lm_head (tied to wte) beside gpt2_seq_bn. The check finds
    it by name (as ``state_dict`` names it), never building the whole state dict."""
    import shutil

    from safetensors.torch import load_file, save_file

    from adapterhub import AdapterModel
    from adapterhub.errors import UnsupportedOperationError

    assert gpt2.lm_head.weight is gpt2.transformer.wte.weight  # the tied case the lookup must handle
    # The lookup agrees with state_dict on every key (same storage) and on absent ones.
    own = gpt2.state_dict()
    assert all(heads._own_tensor(gpt2, k).data_ptr() == v.data_ptr() for k, v in own.items())
    assert heads._own_tensor(gpt2, "lm_head.bias") is None
    assert heads._own_tensor(gpt2, "transformer.h.9.ln_1.weight") is None

    def no_state_dict(*_args, **_kwargs):
        raise AssertionError("check_static_head must not build model.state_dict()")

    monkeypatch.setattr(gpt2, "state_dict", no_state_dict)
    case_dir = ADAPTERS / "gpt2_seq_bn"
    same = bottleneck_format.read_adapters_bottleneck(case_dir, read_adapter_config(case_dir))
    assert set(same.static_head["state_dict"]) == {"lm_head.weight"}
    heads.check_static_head(gpt2, same)  # the model's own head: accepted
    am = AdapterModel(gpt2)
    assert am.load_adapter(case_dir, name="same") == "same"
    am.unload()

    changed_dir = tmp_path / "changed"
    shutil.copytree(case_dir, changed_dir)
    head = load_file(str(changed_dir / "model_head.safetensors"))["lm_head.weight"]
    head[0, 0] += 1.0  # one element off is enough
    save_file({"lm_head.weight": head}, str(changed_dir / "model_head.safetensors"))
    changed = bottleneck_format.read_adapters_bottleneck(changed_dir, read_adapter_config(changed_dir))
    with pytest.raises(UnsupportedOperationError, match=r"'lm_head\.weight' differs") as info:
        heads.check_static_head(gpt2, changed)
    assert str(changed_dir / "model_head.safetensors") in str(info.value)
    with pytest.raises(UnsupportedOperationError, match=r"'lm_head\.weight' differs"):
        am.load_adapter(changed_dir, name="changed")
    # A head tensor the model does not have is refused by name too.
    save_file({"lm_head.bias": head[0]}, str(changed_dir / "model_head.safetensors"))
    missing = bottleneck_format.read_adapters_bottleneck(changed_dir, read_adapter_config(changed_dir))
    with pytest.raises(UnsupportedOperationError, match=r"'lm_head\.bias' has no counterpart in GPT2LMHeadModel"):
        heads.check_static_head(gpt2, missing)
