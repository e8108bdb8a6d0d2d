"""Prompt tuning, prefix tuning and P-tuning against PEFT 0.21.2 (fixtures and PEFT run in-test)
and AdapterHub prefix tuning against `adapters` 1.3.0."""

from __future__ import annotations

import pytest
import torch
from support.fixtures import ADAPTERS, BASE, PEFT, load_reference, state_hash

from adapterhub import AdapterModel, BatchSplit, Stack
from adapterhub.errors import CompositionError, UnsupportedOperationError
from adapterhub.plugin import get_method

#: compared with outputs PEFT or `adapters` produced: run by .ci/compat on every transformers release
pytestmark = pytest.mark.fidelity

ATOL = 1e-5


@pytest.mark.parametrize("case_name", ["prompt_tuning", "prefix_tuning"])
def test_peft_fixture_outputs(gpt2, case_name):
    ref = load_reference(PEFT / case_name)
    am = AdapterModel(gpt2)
    am.load_adapter(PEFT / case_name, name="p")
    am.set_adapter("p")
    with torch.no_grad():
        out = am(input_ids=ref["input_ids"], attention_mask=ref["attention_mask"]).logits
    assert out.shape == ref["expected"].shape
    assert torch.allclose(out, ref["expected"], atol=ATOL, rtol=0)


def test_adapters_prefix_tuning_fixture(bert):
    ref = load_reference(ADAPTERS / "prefix_tuning")
    am = AdapterModel(bert)
    am.load_adapter(ADAPTERS / "prefix_tuning", name="prefix", allow_pickle=True)
    am.set_adapter("prefix")
    with torch.no_grad():
        out = am(input_ids=ref["input_ids"], attention_mask=ref["attention_mask"]).last_hidden_state
    assert torch.allclose(out, ref["expected"], atol=ATOL, rtol=0)


def _peft_reference(base_model, peft_config, inputs, tmp_path, seed):
    """Build, randomise and save a PEFT prompt-learning adapter; return (dir, PEFT's output)."""
    from peft import get_peft_model

    peft_model = get_peft_model(base_model, peft_config)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "prompt_encoder" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    peft_model.save_pretrained(str(tmp_path / "adapter"))
    from peft import PeftModel

    fresh_base = type(base_model).from_pretrained(base_model.name_or_path).eval()
    loaded = PeftModel.from_pretrained(fresh_base, str(tmp_path / "adapter")).eval()
    with torch.no_grad():
        expected = loaded(**inputs).logits
    return tmp_path / "adapter", expected


def test_llama_prefix_tuning_gqa_matches_peft(tmp_path):
    from peft import PrefixTuningConfig
    from transformers import LlamaForCausalLM

    ref = load_reference(PEFT / "prefix_tuning")
    inputs = {"input_ids": ref["input_ids"], "attention_mask": ref["attention_mask"]}
    base = LlamaForCausalLM.from_pretrained(str(BASE / "tiny-llama"))
    assert base.config.num_key_value_heads != base.config.num_attention_heads
    path, expected = _peft_reference(base, PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3),
                                     inputs, tmp_path, seed=11)
    am = AdapterModel(LlamaForCausalLM.from_pretrained(str(BASE / "tiny-llama")).eval())
    am.load_adapter(path, name="prefix")
    am.set_adapter("prefix")
    with torch.no_grad():
        out = am(**inputs).logits
    assert torch.allclose(out, expected, atol=ATOL, rtol=0)


def test_p_tuning_matches_peft(tmp_path):
    from peft import PromptEncoderConfig
    from transformers import GPT2LMHeadModel

    ref = load_reference(PEFT / "prompt_tuning")
    inputs = {"input_ids": ref["input_ids"], "attention_mask": ref["attention_mask"]}
    base = GPT2LMHeadModel.from_pretrained(str(BASE / "tiny-gpt2"))
    path, expected = _peft_reference(base, PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=4,
                                                               encoder_hidden_size=32), inputs, tmp_path, seed=12)
    am = AdapterModel(GPT2LMHeadModel.from_pretrained(str(BASE / "tiny-gpt2")).eval())
    am.load_adapter(path, name="pt")
    assert am.adapters["pt"].method == "p_tuning"
    am.set_adapter("pt")
    with torch.no_grad():
        out = am(**inputs).logits
    assert torch.allclose(out, expected, atol=ATOL, rtol=0)


def test_mixed_stack_bottleneck_and_prompt_tuning(bert, bert_inputs, tmp_path):
    """Stack(bottleneck, prompt): the composed reference is the bottleneck model fed
    cat(prompt, word_embeddings) with the mask widened, as PEFT prompt tuning does."""
    from safetensors.torch import save_file

    from adapterhub.toolkit.weights import write_json

    prompt = torch.randn(3, 64, generator=torch.Generator().manual_seed(3))
    d = tmp_path / "prompt"
    d.mkdir()
    save_file({"prompt_embeddings": prompt}, str(d / "adapter_model.safetensors"))
    write_json(d / "adapter_config.json", {"peft_type": "PROMPT_TUNING", "num_virtual_tokens": 3, "token_dim": 64,
                                           "num_transformer_submodules": 1, "task_type": "FEATURE_EXTRACTION"})
    am = AdapterModel(bert)
    am.load_adapter(ADAPTERS / "seq_bn_safetensors", name="bn")
    am.load_adapter(d, name="prompt")
    am.set_adapter("bn")
    with torch.no_grad():
        embeds = torch.cat([prompt.expand(3, -1, -1), bert.embeddings.word_embeddings(bert_inputs["input_ids"])], 1)
        mask = torch.cat([torch.ones(3, 3, dtype=torch.long), bert_inputs["attention_mask"]], 1)
        expected = am(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        am.set_adapter(Stack("bn", "prompt"))
        out = am(**bert_inputs).last_hidden_state
    assert out.shape == (3, 13, 64)
    assert torch.allclose(out, expected, atol=ATOL, rtol=0)


def test_prompt_compositions_and_merge_refused(gpt2, tmp_path):
    ref = load_reference(PEFT / "prompt_tuning")
    inputs = {"input_ids": ref["input_ids"], "attention_mask": ref["attention_mask"]}
    before = state_hash(gpt2)
    am = AdapterModel(gpt2)
    am.load_adapter(PEFT / "prompt_tuning", name="a")
    am.load_adapter(PEFT / "prompt_tuning", name="b")
    am.set_adapter(BatchSplit("a", "b", batch_sizes=[1, 2]))
    with torch.no_grad():
        out = am(**inputs).logits
    assert torch.allclose(out, ref["expected"], atol=ATOL, rtol=0)
    from adapterhub import Average

    with pytest.raises(CompositionError, match="Average: method 'prompt_tuning' cannot average"):
        am.set_adapter(Average("a", "b"))
    am.set_adapter("a")
    with pytest.raises(UnsupportedOperationError, match="cannot be merged"):
        am.merge_adapter()
    am.unload()
    assert state_hash(gpt2) == before
    with torch.no_grad():
        assert am(**inputs).logits.shape == (3, 10, 128)


@pytest.mark.parametrize("method,config", [
    ("prompt_tuning", {"num_virtual_tokens": 4}),
    ("prefix_tuning", {"num_virtual_tokens": 4, "prefix_projection": True, "encoder_hidden_size": 16}),
    ("p_tuning", {"num_virtual_tokens": 4, "encoder_hidden_size": 16}),
])
def test_training_changes_only_prompt_and_peft_reads_it(gpt2, method, config, tmp_path):
    from peft import PeftModel
    from transformers import GPT2LMHeadModel

    ref = load_reference(PEFT / "prompt_tuning")
    inputs = {"input_ids": ref["input_ids"], "attention_mask": ref["attention_mask"]}
    base_hash = state_hash(gpt2, exclude=("adapterhub_prompts",))
    am = AdapterModel(gpt2)
    am.add_adapter("t", method, **config)
    am.set_adapter("t")
    params = get_method(method).parameters(gpt2, "t")
    assert {id(p) for p in gpt2.parameters() if p.requires_grad} == {id(p) for p in params}
    before = [p.detach().clone() for p in params]
    opt = torch.optim.Adam(params, lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        am(**inputs, labels=inputs["input_ids"]).loss.backward()
        opt.step()
    assert any(not torch.equal(a, p) for a, p in zip(before, params))
    assert state_hash(gpt2, exclude=("adapterhub_prompts",)) == base_hash
    gpt2.eval()
    with torch.no_grad():
        ours = am(**inputs).logits
    am.save_adapter(tmp_path / "t", "t")
    peft_model = PeftModel.from_pretrained(GPT2LMHeadModel.from_pretrained(str(BASE / "tiny-gpt2")).eval(),
                                           str(tmp_path / "t")).eval()
    with torch.no_grad():
        theirs = peft_model(**inputs).logits
    assert torch.allclose(ours, theirs, atol=ATOL, rtol=0)
    am.unload()
    assert state_hash(gpt2) == base_hash
