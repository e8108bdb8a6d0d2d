"""AdapterHub format <-> ours <-> PEFT for LoRA and IA3, judged by real PEFT and the adapters fixtures."""

from __future__ import annotations

import pytest
import torch
from support.fixtures import ADAPTERS, BASE, load_reference
from safetensors.torch import load_file

from adapterhub import AdapterModel
from adapterhub.plugin import read_adapter_config

#: compared with outputs PEFT or `adapters` produced: run by .ci/compat on every transformers release
pytestmark = pytest.mark.fidelity

ATOL = 1e-5


def _bert():
    from transformers import BertModel

    return BertModel.from_pretrained(str(BASE / "tiny-bert")).eval()


def _inputs():
    ref = load_reference(ADAPTERS / "lora")
    return {"input_ids": ref["input_ids"], "attention_mask": ref["attention_mask"]}


def _peft_out(path, inputs):
    from peft import PeftModel

    model = PeftModel.from_pretrained(_bert(), str(path)).eval()
    with torch.no_grad():
        return model(**inputs).last_hidden_state


def _ours(path, inputs, **kwargs):
    am = AdapterModel(_bert())
    am.load_adapter(path, name="x", **kwargs)
    am.set_adapter("x")
    with torch.no_grad():
        return am, am(**inputs).last_hidden_state


def test_adapters_lora_saved_as_peft_loads_in_peft(tmp_path):
    for case, pickle in (("lora", True), ("lora_safetensors", False)):
        ref = load_reference(ADAPTERS / case)
        am = AdapterModel(_bert())
        am.load_adapter(ADAPTERS / case, name="lora", allow_pickle=pickle)
        am.save_adapter(tmp_path / case, "lora", format="peft")
        config = read_adapter_config(tmp_path / case)
        assert config["peft_type"] == "LORA" and config["r"] == 4 and config["lora_alpha"] == 8
        out = _peft_out(tmp_path / case, {k: ref[k] for k in ("input_ids", "attention_mask")})
        assert torch.allclose(out, ref["expected"], atol=ATOL, rtol=0), case


@pytest.fixture(scope="module")
def peft_made(tmp_path_factory):
    """A LoRA and an IA3 adapter made and saved by PEFT on tiny BERT, with non-trivial weights."""
    from peft import IA3Config, LoraConfig, get_peft_model

    root = tmp_path_factory.mktemp("peft_made")
    torch.manual_seed(3)
    lora = get_peft_model(_bert(), LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value", "intermediate.dense"],
                                              init_lora_weights=False))
    lora.save_pretrained(root / "lora")
    ia3 = get_peft_model(_bert(), IA3Config(target_modules=["key", "value"], feedforward_modules=[]))
    with torch.no_grad():
        for name, param in ia3.named_parameters():
            if "ia3_l" in name:
                param.copy_(1 + 0.3 * torch.randn_like(param))
    ia3.save_pretrained(root / "ia3")
    return root


@pytest.mark.parametrize("kind", ["lora", "ia3"])
def test_peft_to_adapters_to_ours_to_peft_is_lossless(peft_made, tmp_path, kind):
    inputs = _inputs()
    source = peft_made / kind
    expected = _peft_out(source, inputs)
    am, out = _ours(source, inputs)
    assert torch.allclose(out, expected, atol=ATOL, rtol=0)

    am.save_adapter(tmp_path / "ah", "x", format="adapters")
    config = read_adapter_config(tmp_path / "ah")
    inner = config["config"]
    assert inner["architecture"] == "lora"  # adapters 1.3.0 writes IA3 as lora + composition_mode scale
    if kind == "ia3":
        assert inner["composition_mode"] == "scale" and sorted(inner["attn_matrices"]) == ["k", "v"]
    else:
        assert inner["composition_mode"] == "add" and (inner["r"], inner["alpha"]) == (4, 8)
        assert sorted(inner["attn_matrices"]) == ["q", "v"] and inner["intermediate_lora"] is True
    am2, out2 = _ours(tmp_path / "ah", inputs)
    assert torch.allclose(out2, expected, atol=ATOL, rtol=0)

    am2.save_adapter(tmp_path / "back", "x", format="peft")
    original = load_file(str(source / "adapter_model.safetensors"))
    back = load_file(str(tmp_path / "back" / "adapter_model.safetensors"))
    assert set(back) == set(original)
    assert all(torch.equal(back[k], original[k]) for k in original)
    assert torch.allclose(_peft_out(tmp_path / "back", inputs), expected, atol=ATOL, rtol=0)


def test_adapters_lora_to_peft_and_back_keeps_adapters_tensors(tmp_path):
    """adapters file -> ours -> PEFT dir -> ours -> adapters file: the same tensors under the same keys."""
    am = AdapterModel(_bert())
    am.load_adapter(ADAPTERS / "lora_safetensors", name="lora")
    am.save_adapter(tmp_path / "peft", "lora", format="peft")
    am2 = AdapterModel(_bert())
    am2.load_adapter(tmp_path / "peft", name="lora")
    am2.save_adapter(tmp_path / "ah", "lora", format="adapters")
    original = load_file(str(ADAPTERS / "lora_safetensors" / "adapter.safetensors"))
    again = load_file(str(tmp_path / "ah" / "adapter.safetensors"))
    assert set(again) == set(original) and all(torch.equal(again[k], original[k]) for k in original)
    config = read_adapter_config(tmp_path / "ah")
    assert config["config"]["attn_matrices"] == ["q", "v"] and config["name"] == "lora"
    assert config["hidden_size"] == 64 and config["model_type"] == "bert"
