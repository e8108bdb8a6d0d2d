"""The runtime against PEFT 0.21.2: fixtures saved by PEFT (with PEFT's outputs) and adapters that
real PEFT creates and runs inside the tests. Never compared with our own outputs."""

from __future__ import annotations

import copy

import pytest
import torch
from support.fixtures import load_base, load_case, logits

from adapterhub import AdapterModel, Average, BatchSplit, Parallel, Stack
from adapterhub.testing import save_peft_adapter, state_dict_copy, state_dicts_equal

#: compared with outputs PEFT or `adapters` produced: run by .ci/compat on every transformers release
pytestmark = pytest.mark.fidelity

ATOL = 1e-5


@pytest.mark.parametrize("case", ["lora", "ia3", "lora_llama"])
def test_fixture_matches_peft_reference_and_merge_roundtrip(case):
    folder, meta, ref = load_case(case)
    base = load_base(meta)
    pristine = state_dict_copy(base)
    feed = {"input_ids": ref["input_ids"], "attention_mask": ref["attention_mask"]}
    am = AdapterModel(base)
    am.load_adapter(folder, name="a")
    # loaded adapters start inactive: the base output comes out
    base_ref = logits(base, feed)
    am.set_adapter("a")
    torch.testing.assert_close(logits(am, feed), ref["expected"], atol=ATOL, rtol=0)
    assert (base_ref - ref["expected"]).abs().max() > 1e-3
    am.merge_adapter()
    torch.testing.assert_close(logits(am, feed), ref["expected"], atol=ATOL, rtol=0)
    am.unmerge_adapter()
    with am.disable_adapter():
        torch.testing.assert_close(logits(am, feed), base_ref, atol=0, rtol=0)
    torch.testing.assert_close(logits(am, feed), ref["expected"], atol=ATOL, rtol=0)
    model = am.unload()
    assert state_dicts_equal(pristine, state_dict_copy(model))
    assert not hasattr(model, "peft_config")


def test_merge_and_unload_matches_peft(tmp_path):
    from peft import PeftModel

    folder, meta, ref = load_case("lora_llama")
    feed = {"input_ids": ref["input_ids"], "attention_mask": ref["attention_mask"]}
    expected = PeftModel.from_pretrained(load_base(meta), str(folder)).merge_and_unload()
    am = AdapterModel(load_base(meta))
    am.load_adapter(folder, name="a")
    am.set_adapter("a")
    plain = am.merge_and_unload()
    assert not any("lora" in n for n, _ in plain.named_modules())
    assert state_dicts_equal(state_dict_copy(plain), state_dict_copy(expected)) or all(
        torch.allclose(v, expected.state_dict()[k], atol=1e-6) for k, v in plain.state_dict().items()
    )
    torch.testing.assert_close(logits(plain, feed), ref["expected"], atol=ATOL, rtol=0)


LLAMA_TARGETS = ["q_proj", "v_proj", "down_proj"]


def _lora(**kw):
    from peft import LoraConfig

    return LoraConfig(**{"r": 4, "lora_alpha": 8, "target_modules": LLAMA_TARGETS, **kw})


GENERATED = {
    "rslora_patterns": dict(use_rslora=True, rank_pattern={"v_proj": 2}, alpha_pattern={"down_proj": 3}),
    "dora": dict(use_dora=True),
    "embedding": dict(target_modules=["embed_tokens", "q_proj"]),
}


@pytest.mark.parametrize("variant", sorted(GENERATED))
def test_generated_lora_matches_peft_and_saves_for_peft(variant, llama_base, inputs, tmp_path):
    from peft import PeftModel

    path = save_peft_adapter(llama_base, _lora(**GENERATED[variant]), tmp_path / "src", seed=3)
    expected = logits(PeftModel.from_pretrained(copy.deepcopy(llama_base), str(path)), inputs)
    am = AdapterModel(copy.deepcopy(llama_base))
    am.load_adapter(path, name="x")
    am.set_adapter("x")
    torch.testing.assert_close(logits(am, inputs), expected, atol=ATOL, rtol=0)
    assert (expected - logits(llama_base, inputs)).abs().max() > 1e-3
    # what we save, PEFT loads and reproduces
    am.save_adapter(tmp_path / "saved", "x")
    reloaded = PeftModel.from_pretrained(copy.deepcopy(llama_base), str(tmp_path / "saved"))
    torch.testing.assert_close(logits(reloaded, inputs), expected, atol=ATOL, rtol=0)
    # merge -> unmerge is exact, merged output matches PEFT's merged model
    before = state_dict_copy(am.model)
    am.merge_adapter()
    merged_ref = logits(PeftModel.from_pretrained(copy.deepcopy(llama_base), str(path)).merge_and_unload(), inputs)
    torch.testing.assert_close(logits(am, inputs), merged_ref, atol=ATOL, rtol=0)
    am.unmerge_adapter()
    assert state_dicts_equal(before, state_dict_copy(am.model))


def test_modules_to_save_head_on_bert(tmp_path, inputs):
    from peft import LoraConfig, PeftModel

    from adapterhub.testing import tiny_bert

    base = tiny_bert(seed=2, num_labels=3)
    config = LoraConfig(r=4, target_modules=["query", "value"], modules_to_save=["classifier"])
    path = save_peft_adapter(base, config, tmp_path / "cls", seed=5)
    from safetensors.torch import load_file

    assert "base_model.model.classifier.weight" in load_file(str(path / "adapter_model.safetensors"))
    expected = logits(PeftModel.from_pretrained(copy.deepcopy(base), str(path)), inputs)
    am = AdapterModel(copy.deepcopy(base))
    am.load_adapter(path, name="cls")
    am.set_adapter("cls")
    torch.testing.assert_close(logits(am, inputs), expected, atol=ATOL, rtol=0)
    am.save_adapter(tmp_path / "out", "cls")
    assert "base_model.model.classifier.weight" in load_file(str(tmp_path / "out" / "adapter_model.safetensors"))
    plain = am.merge_and_unload()
    ref_plain = PeftModel.from_pretrained(copy.deepcopy(base), str(path)).merge_and_unload()
    torch.testing.assert_close(logits(plain, inputs), logits(ref_plain, inputs), atol=ATOL, rtol=0)


@pytest.fixture(scope="module")
def two_loras(llama_base, tmp_path_factory):
    root = tmp_path_factory.mktemp("two")
    a = save_peft_adapter(llama_base, _lora(), root / "a", seed=11)
    b = save_peft_adapter(llama_base, _lora(r=8, lora_alpha=4, target_modules=["q_proj", "k_proj"]), root / "b", seed=12)
    return a, b


def _peft_multi(base, a, b):
    from peft import PeftModel

    model = PeftModel.from_pretrained(copy.deepcopy(base), str(a), adapter_name="a")
    model.load_adapter(str(b), adapter_name="b")
    return model


def test_stack_and_batch_split_and_parallel_match_peft(llama_base, two_loras, inputs):
    a, b = two_loras
    peft_model = _peft_multi(llama_base, a, b)
    peft_model.base_model.set_adapter(["a", "b"], inference_mode=True)
    stacked = logits(peft_model, inputs)
    peft_model.base_model.set_adapter(["a", "b"], inference_mode=True)
    with torch.no_grad():
        mixed = peft_model(**inputs, adapter_names=["a", "__base__", "b"]).logits
    peft_model.set_adapter("a")
    only_a = logits(peft_model, inputs)
    peft_model.set_adapter("b")
    only_b = logits(peft_model, inputs)

    am = AdapterModel(copy.deepcopy(llama_base))
    am.load_adapter(a, name="a")
    am.load_adapter(b, name="b")
    am.set_adapter(["a", "b"])
    assert am.active_setup == Stack("a", "b")
    torch.testing.assert_close(logits(am, inputs), stacked, atol=ATOL, rtol=0)
    am.set_adapter(BatchSplit("a", "b", batch_sizes=[1, 2]))
    split = logits(am, inputs)
    torch.testing.assert_close(split[0], only_a[0], atol=ATOL, rtol=0)
    torch.testing.assert_close(split[1:], only_b[1:], atol=ATOL, rtol=0)
    # rows served by the base through PEFT's "__base__" row name
    am.set_adapter(Parallel("a", "b"))
    par = logits(am, inputs)
    assert par.shape[0] == 6
    torch.testing.assert_close(par[:3], only_a, atol=ATOL, rtol=0)
    torch.testing.assert_close(par[3:], only_b, atol=ATOL, rtol=0)
    assert mixed.shape == split.shape  # PEFT's mixed batch was computed above on the same inputs
    torch.testing.assert_close(mixed[0], split[0], atol=ATOL, rtol=0)
    torch.testing.assert_close(mixed[2], split[2], atol=ATOL, rtol=0)


def test_average_is_peft_cat_weighted_delta(llama_base, two_loras, inputs):
    a, b = two_loras
    peft_model = _peft_multi(llama_base, a, b)
    peft_model.add_weighted_adapter(["a", "b"], [0.75, 0.25], "avg", combination_type="cat")
    peft_model.set_adapter("avg")
    expected = logits(peft_model, inputs)
    am = AdapterModel(copy.deepcopy(llama_base))
    am.load_adapter(a, name="a")
    am.load_adapter(b, name="b")
    am.set_adapter(Average("a", "b", weights=[3, 1]))
    torch.testing.assert_close(logits(am, inputs), expected, atol=ATOL, rtol=0)
    am.merge_adapter()  # an Average merges as its weighted delta
    torch.testing.assert_close(logits(am, inputs), expected, atol=ATOL, rtol=0)


def test_weighted_merge_is_right_for_rslora_where_peft_is_not(llama_base, tmp_path):
    from peft import PeftModel

    a = save_peft_adapter(llama_base, _lora(r=8, lora_alpha=16, use_rslora=True), tmp_path / "a", seed=21)
    b = save_peft_adapter(llama_base, _lora(r=8, lora_alpha=16, use_rslora=True), tmp_path / "b", seed=22)
    weights = [0.7, 0.3]
    am = AdapterModel(copy.deepcopy(llama_base))
    am.load_adapter(a, name="a")
    am.load_adapter(b, name="b")
    layer = am.model.model.layers[0].self_attn.q_proj
    w0 = layer.base_layer.weight.detach().clone()
    expected_delta = sum(
        w * (16 / 8**0.5) * (layer.lora_B[n].weight @ layer.lora_A[n].weight) for n, w in zip("ab", weights)
    ).detach()
    am.merge_adapter(["a", "b"], weights)
    ours = layer.get_base_layer().weight.detach() - w0
    torch.testing.assert_close(ours, expected_delta, atol=1e-6, rtol=1e-5)
    # PEFT's add_weighted_adapter keeps use_rslora on the combined rank and over-scales it
    peft_model = _peft_multi(llama_base, a, b)
    peft_model.add_weighted_adapter(["a", "b"], weights, "w", combination_type="cat")
    peft_layer = peft_model.base_model.model.model.layers[0].self_attn.q_proj
    peft_delta = peft_layer.get_delta_weight("w").detach()
    assert not torch.allclose(peft_delta, expected_delta, atol=1e-4)
    am.unmerge_adapter()
    assert torch.equal(layer.get_base_layer().weight, w0)
    assert isinstance(PeftModel, type)


def test_ia3_stack_matches_peft_multi_active(tmp_path, inputs):
    from peft import IA3Config, PeftModel

    folder, meta, ref = load_case("ia3")
    base = load_base(meta)
    config = IA3Config(target_modules=["c_attn", "mlp.c_proj"], feedforward_modules=["mlp.c_proj"], fan_in_fan_out=True)
    second = save_peft_adapter(base, config, tmp_path / "ia3b", seed=9)
    peft_model = PeftModel.from_pretrained(copy.deepcopy(base), str(folder), adapter_name="a")
    peft_model.load_adapter(str(second), adapter_name="b")
    peft_model.base_model.set_adapter(["a", "b"], inference_mode=True)
    expected = logits(peft_model, inputs)
    am = AdapterModel(copy.deepcopy(base))
    am.load_adapter(folder, name="a")
    am.load_adapter(second, name="b")
    am.set_adapter(Stack("a", "b"))
    torch.testing.assert_close(logits(am, inputs), expected, atol=ATOL, rtol=0)
    # Average = PEFT's weighted IA3 combination
    peft_model.add_weighted_adapter(["a", "b"], [0.5, 0.5], "avg")
    peft_model.set_adapter("avg")
    am.set_adapter(Average("a", "b"))
    torch.testing.assert_close(logits(am, inputs), logits(peft_model, inputs), atol=ATOL, rtol=0)
