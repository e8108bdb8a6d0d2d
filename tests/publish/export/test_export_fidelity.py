"""The exported checkpoint, loaded with transformers alone, equals PEFT's ``merge_and_unload()`` of the
same adapters on the same base folder (PEFT run live here): every method the exporter merges, GPT-2's
Conv1D and tied embeddings, Llama, sharded and unsharded bases, several adapters with weights, bf16."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import assert_same_weights, load, make_adapter, peft_merged, save_base

import adapterhub
from adapterhub.testing import tiny_inputs

#: compared with outputs PEFT produced: run by .ci/compat on every transformers release
pytestmark = pytest.mark.fidelity


def _lora(**kw):
    from peft import LoraConfig

    return LoraConfig(**({"r": 4, "lora_alpha": 8} | kw))


def _logits(model):
    with torch.no_grad():
        return model(**tiny_inputs()).logits


def _check(cls, base, adapters, out, *, atol=1e-5, **options):
    """Export ``adapters`` ([(folder, weight)]) onto ``base``; compare with PEFT's merge."""
    result = adapterhub.export([str(p) for p, _ in adapters], base=base, out=out,
                               weights=[w for _, w in adapters], **options)
    ours = load(cls, out)
    reference = peft_merged(cls, base, adapters)
    assert_same_weights(ours, reference, atol)
    assert torch.allclose(_logits(ours), _logits(reference), atol=1e-4)
    return result, ours


@pytest.mark.parametrize("base_name", ["gpt2", "gpt2-sharded"])
def test_gpt2_lora_on_conv1d_embeddings_and_the_tied_head(bases, models, tmp_path, base_name):
    from transformers import GPT2LMHeadModel

    adapter = make_adapter(models["gpt2"], _lora(target_modules=["c_attn", "c_proj", "c_fc", "wte", "lm_head"]),
                           tmp_path / "lora", seed=1)
    # PEFT flips the shared config's flag on for Conv1D and back off for lm_head (a Linear): the saved
    # config says False, so only the layer type tells that c_attn stores [in, out]
    assert json.loads((adapter / "adapter_config.json").read_text())["fan_in_fan_out"] is False
    result, ours = _check(GPT2LMHeadModel, bases[base_name], [(adapter, 1.0)], tmp_path / "out",
                          max_shard_size="100KB")
    # tied: one tensor, stored once, carrying both the embedding's and the head's delta
    assert ours.lm_head.weight.data_ptr() == ours.transformer.wte.weight.data_ptr()
    index = json.loads((tmp_path / "out" / "model.safetensors.index.json").read_text())
    assert "lm_head.weight" not in index["weight_map"] and "transformer.wte.weight" in index["weight_map"]
    assert len(result.shards) > 1


def test_gpt2_dora_on_conv1d(bases, models, tmp_path):
    from transformers import GPT2LMHeadModel

    adapter = make_adapter(models["gpt2"], _lora(target_modules=["c_attn", "c_fc"], use_dora=True), tmp_path / "a", seed=2)
    _check(GPT2LMHeadModel, bases["gpt2"], [(adapter, 1.0)], tmp_path / "out")


LLAMA_CASES = {
    "plain": dict(target_modules=["q_proj", "v_proj"]),
    "all-linear-rslora": dict(target_modules="all-linear", use_rslora=True, r=8, lora_alpha=4),
    "patterns": dict(target_modules=["q_proj", "k_proj", "down_proj"], rank_pattern={"k_proj": 2},
                     alpha_pattern={"layers.1.self_attn.q_proj": 32}),
    "dora": dict(target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "down_proj"], use_dora=True),
    "embedding": dict(target_modules=["embed_tokens", "q_proj"]),
    "dora-embedding": dict(target_modules=["embed_tokens", "up_proj"], use_dora=True),
    "lm-head": dict(target_modules=["lm_head", "gate_proj"]),
}


@pytest.mark.parametrize("case", list(LLAMA_CASES))
def test_llama_lora_variants_on_a_sharded_base(bases, models, tmp_path, case):
    from transformers import LlamaForCausalLM

    adapter = make_adapter(models["llama"], _lora(**LLAMA_CASES[case]), tmp_path / "a", seed=3)
    result, _ = _check(LlamaForCausalLM, bases["llama-sharded"], [(adapter, 1.0)], tmp_path / "out",
                       max_shard_size="40KB")
    assert result.plan.base.sharded and len(result.shards) > 1


def test_llama_unsharded_base_gives_one_file(bases, models, tmp_path):
    from transformers import LlamaForCausalLM

    adapter = make_adapter(models["llama"], _lora(target_modules=["q_proj", "o_proj"]), tmp_path / "a", seed=4)
    result, _ = _check(LlamaForCausalLM, bases["llama"], [(adapter, 1.0)], tmp_path / "out")
    assert [s.file for s in result.shards] == ["model.safetensors"]
    assert not (tmp_path / "out" / "model.safetensors.index.json").exists()


@pytest.mark.parametrize("base_name, targets, feedforward", [
    ("gpt2", ["c_attn", "c_fc", "c_proj"], ["c_fc"]),
    ("llama-sharded", ["q_proj", "v_proj", "down_proj"], ["down_proj"]),
])
def test_ia3(bases, models, tmp_path, base_name, targets, feedforward):
    from peft import IA3Config
    from transformers import GPT2LMHeadModel, LlamaForCausalLM

    cls = GPT2LMHeadModel if base_name == "gpt2" else LlamaForCausalLM
    adapter = make_adapter(models[base_name.split("-")[0]], IA3Config(target_modules=targets,
                                                                      feedforward_modules=feedforward),
                           tmp_path / "a", seed=5)
    _check(cls, bases[base_name], [(adapter, 1.0)], tmp_path / "out")


@pytest.mark.parametrize("options", [
    dict(lora_bias=True, modules_to_save=["classifier"]),
    dict(bias="lora_only"),
    dict(bias="all", use_dora=True),
])
def test_bert_trained_biases_and_modules_to_save(bases, models, tmp_path, options):
    from transformers import BertForSequenceClassification

    adapter = make_adapter(models["bert-cls"], _lora(target_modules=["query", "value"], **options), tmp_path / "a", seed=6)
    _check(BertForSequenceClassification, bases["bert-cls"], [(adapter, 1.0)], tmp_path / "out")


def test_several_loras_merge_in_order_with_their_weights(bases, models, tmp_path):
    from transformers import LlamaForCausalLM

    a = make_adapter(models["llama"], _lora(target_modules=["q_proj", "v_proj", "down_proj"]), tmp_path / "a", seed=7)
    b = make_adapter(models["llama"], _lora(target_modules=["q_proj", "k_proj"], use_rslora=True, r=2), tmp_path / "b",
                     seed=8)
    c = make_adapter(models["llama"], _lora(target_modules=["v_proj"], use_dora=True), tmp_path / "c", seed=9)
    result, _ = _check(LlamaForCausalLM, bases["llama-sharded"], [(a, 0.7), (b, -0.4), (c, 1.0)], tmp_path / "out")
    assert [x.weight for x in result.adapters] == [0.7, -0.4, 1.0]


def test_lora_then_ia3_equals_merging_one_after_the_other(bases, models, tmp_path):
    """Mixed methods merge in the order given: LoRA first, then IA3 scales the merged weight."""
    from peft import IA3Config, PeftModel
    from transformers import LlamaForCausalLM

    lora = make_adapter(models["llama"], _lora(target_modules=["q_proj", "down_proj"]), tmp_path / "l", seed=10)
    ia3 = make_adapter(models["llama"], IA3Config(target_modules=["q_proj", "down_proj"], feedforward_modules=["down_proj"]),
                       tmp_path / "i", seed=11)
    adapterhub.export([str(lora), str(ia3)], base=bases["llama"], out=tmp_path / "out")
    step = PeftModel.from_pretrained(load(LlamaForCausalLM, bases["llama"]), str(lora)).merge_and_unload()
    reference = PeftModel.from_pretrained(step, str(ia3)).merge_and_unload()
    assert_same_weights(load(LlamaForCausalLM, tmp_path / "out"), reference)


def test_ia3_weight_scales_the_vector_towards_one(bases, models, tmp_path):
    """IA3 with weight w merges the vector 1 + w * (l - 1) (PEFT merges that vector when saved so)."""
    from peft import IA3Config
    from safetensors.torch import load_file, save_file
    from transformers import LlamaForCausalLM

    ia3 = make_adapter(models["llama"], IA3Config(target_modules=["v_proj", "up_proj"], feedforward_modules=["up_proj"]),
                       tmp_path / "i", seed=12)
    scaled = tmp_path / "scaled"
    scaled.mkdir()
    (scaled / "adapter_config.json").write_text((ia3 / "adapter_config.json").read_text())
    tensors = load_file(str(ia3 / "adapter_model.safetensors"))
    save_file({k: 1 + 0.3 * (v - 1) for k, v in tensors.items()}, str(scaled / "adapter_model.safetensors"))
    adapterhub.export([str(ia3)], base=bases["llama"], out=tmp_path / "out", weights=[0.3])
    assert_same_weights(load(LlamaForCausalLM, tmp_path / "out"), peft_merged(LlamaForCausalLM, bases["llama"],
                                                                              [(scaled, 1.0)]))


def test_bf16_base_stays_bf16_and_is_rounded_once(models, tmp_path):
    from transformers import GPT2LMHeadModel

    base = save_base(models["gpt2"], tmp_path / "base", dtype=torch.bfloat16, shard="80KB")
    adapter = make_adapter(models["gpt2"], _lora(target_modules=["c_attn", "c_fc", "wte"]), tmp_path / "a", seed=13)
    adapterhub.export([str(adapter)], base=base, out=tmp_path / "out")
    ours = GPT2LMHeadModel.from_pretrained(str(tmp_path / "out"), dtype="auto")
    assert ours.transformer.h[0].attn.c_attn.weight.dtype == torch.bfloat16
    # exact: PEFT's merge in float32 of the same (upcast) bf16 base, rounded to bf16 once
    fp32_reference = peft_merged(GPT2LMHeadModel, base, [(adapter, 1.0)], dtype=torch.float32)
    expected = {k: v.to(torch.bfloat16) for k, v in fp32_reference.state_dict().items()}
    got = ours.state_dict()
    assert all(torch.equal(got[k], expected[k]) for k in expected), "not the float32 merge rounded once"
    # and within bf16 rounding of PEFT's own merge in bf16, which rounds the delta and then the sum:
    # each rounding is at most 2**-8 of what it rounds, so |ours - PEFT's| <= 2**-8 * (|delta| + 2|sum|)
    bf16_reference = peft_merged(GPT2LMHeadModel, base, [(adapter, 1.0)], dtype=torch.bfloat16).state_dict()
    base_sd = load(GPT2LMHeadModel, base).state_dict()
    exact = fp32_reference.state_dict()
    for key, value in bf16_reference.items():
        delta = (exact[key] - base_sd[key]).abs()
        gap = (got[key].float() - value.float()).abs()
        assert torch.all(gap <= 2 ** -7 * base_sd[key].abs() + 3 * 2 ** -8 * delta + 1e-30), key


def test_dtype_option_converts_and_records_it(bases, models, tmp_path):
    from transformers import LlamaForCausalLM

    adapter = make_adapter(models["llama"], _lora(target_modules=["q_proj", "v_proj"]), tmp_path / "a", seed=14)
    adapterhub.export([str(adapter)], base=bases["llama"], out=tmp_path / "out", dtype="bf16")
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["dtype"] == "bfloat16"
    ours = LlamaForCausalLM.from_pretrained(str(tmp_path / "out"), dtype="auto")
    assert ours.model.layers[0].self_attn.q_proj.weight.dtype == torch.bfloat16
    expected = {k: v.to(torch.bfloat16) for k, v in peft_merged(LlamaForCausalLM, bases["llama"],
                                                                [(adapter, 1.0)]).state_dict().items()}
    assert all(torch.equal(ours.state_dict()[k], expected[k]) for k in expected)


@pytest.mark.parametrize("library, case_name", [
    ("peft", "lora"), ("peft", "lora_llama"), ("peft", "ia3"),
    ("adapters", "lora_safetensors"), ("adapters", "ia3"),
])
def test_saved_library_outputs_from_the_exported_checkpoint(tmp_path, library, case_name):
    """The committed fixtures hold the output PEFT 0.21.2 / adapters 1.3.0 computed with the adapter
    active on the tiny base; the exported checkpoint (adapter merged) computes it alone."""
    import transformers
    from support.fixtures import ADAPTERS, FIXTURES, PEFT, case, load_reference

    case_dir = (PEFT if library == "peft" else ADAPTERS) / case_name
    spec, ref = case(case_dir), load_reference(case_dir)
    adapterhub.export([str(case_dir)], base=FIXTURES / spec["base"], out=tmp_path / "out")
    model = getattr(transformers, spec["base_class"]).from_pretrained(str(tmp_path / "out")).eval()
    with torch.no_grad():
        output = model(input_ids=ref["input_ids"], attention_mask=ref["attention_mask"])[spec["output"]]
    assert torch.allclose(output, ref["expected"], atol=spec["tolerance"]["atol"], rtol=0), \
        (output - ref["expected"]).abs().max()
