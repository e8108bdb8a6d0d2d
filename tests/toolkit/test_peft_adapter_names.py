"""Adapter names that are also parameter names (``bias``, ``weight``): which tensors an adapter owns
(:func:`adapterhub.toolkit.peft.inject.owns_param`) is decided by the attribute that holds it, never
by the name alone, so such adapters load, count and run exactly like any other name (against PEFT,
run live)."""

from __future__ import annotations

import copy

import pytest
import torch

from adapterhub import AdapterModel
from adapterhub.plugin import get_method
from adapterhub.toolkit.peft.inject import owns_param

pytestmark = pytest.mark.fidelity


def test_the_name_counts_only_after_an_adapter_attribute():
    markers = ("lora_",)
    assert owns_param("encoder.layer.0.attention.self.query.lora_A.bias.weight", "bias", markers)
    assert owns_param("classifier.modules_to_save.bias.weight", "bias", markers)
    assert not owns_param("encoder.layer.0.attention.output.dense.bias", "bias", markers)
    assert not owns_param("encoder.layer.0.attention.self.query.base_layer.bias", "bias", markers)
    assert not owns_param("encoder.layer.0.attention.self.query.lora_B.default.bias", "bias", markers)
    assert not owns_param("embeddings.word_embeddings.weight", "weight", markers)
    assert owns_param("h.0.attn.c_attn.ia3_l.weight", "weight", ("ia3_l",))
    assert not owns_param("h.0.attn.c_attn.ia3_l.default", "weight", ("ia3_l",))


@pytest.mark.parametrize("name", ["bias", "weight", "layer"])
@pytest.mark.parametrize("kind", ["lora", "ia3"])
def test_an_adapter_named_like_a_parameter_loads_and_runs_as_peft_does(bert, bert_inputs, tmp_path, name, kind):
    from peft import IA3Config, LoraConfig, get_peft_model

    if kind == "lora":
        config = LoraConfig(r=2, lora_alpha=4, target_modules=["query", "value"], init_lora_weights=False,
                            lora_bias=True)
    else:
        config = IA3Config(target_modules=["key", "output.dense"], feedforward_modules=["output.dense"],
                           init_ia3_weights=False)
    torch.manual_seed(0)
    peft_model = get_peft_model(copy.deepcopy(bert), config, adapter_name=name).eval()
    if kind == "ia3":
        with torch.no_grad():
            for param_name, param in peft_model.named_parameters():
                if "ia3_l" in param_name:
                    param.uniform_(0.5, 1.5)
    peft_model.save_pretrained(str(tmp_path))
    with torch.no_grad():
        expected = peft_model(**bert_inputs).last_hidden_state
        base_out = bert(**bert_inputs).last_hidden_state
    assert (expected - base_out).abs().max() > 1e-3  # the adapter changes the output

    am = AdapterModel(bert)
    am.load_adapter(tmp_path / name if (tmp_path / name).is_dir() else tmp_path, name=name)
    am.load_adapter(tmp_path / name if (tmp_path / name).is_dir() else tmp_path, name="default")
    am.set_adapter(name)
    with torch.no_grad():
        got = am(**bert_inputs).last_hidden_state
    assert (got - expected).abs().max() <= 1e-5
    # the adapter's own tensors, not the base's biases/weights nor the second adapter's
    peft_count = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    for adapter in (name, "default"):
        owned = get_method(kind).parameters(am.model, adapter)
        assert sum(p.numel() for p in owned) == peft_count
