"""Compositions of *different* methods through AdapterModel, checked against independent references.

The reference forwards (reference_math.py) are written by hand from the raw adapter tensors and are
first shown to reproduce what `adapters` 1.3.0 and PEFT compute for each piece alone; LoRA + IA3 is
also compared with PEFT's own nested result (two PeftModels on one model: PeftMixedModel does not
accept IA3 in peft 0.21.2).
"""

from __future__ import annotations

import pytest
import torch
from support.fixtures import ADAPTERS, BASE, PEFT, load_reference, state_hash
from support.reference_math import lora_deltas, reference_bert
from safetensors.torch import load_file

from adapterhub import AdapterModel, Average, BatchSplit, Parallel, Stack
from adapterhub.errors import CompositionError, UnsupportedOperationError

#: compared with outputs PEFT or `adapters` produced: run by .ci/compat on every transformers release
pytestmark = pytest.mark.fidelity

ATOL = 1e-5
LORA_A = ADAPTERS / "lora_safetensors"  # adapters 1.3.0: r=4, alpha=8 on query/value
BN_A = ADAPTERS / "seq_bn_safetensors"


def _bert():
    from transformers import BertModel

    return BertModel.from_pretrained(str(BASE / "tiny-bert")).eval()


def _raw_bn(path):
    if (path / "adapter.safetensors").exists():
        return load_file(str(path / "adapter.safetensors"))
    return torch.load(path / "pytorch_adapter.bin", weights_only=True)


@pytest.fixture(scope="module")
def peft_dirs(tmp_path_factory):
    """Adapters made by PEFT itself on tiny BERT: two prompts (3 tokens) and a second LoRA."""
    from peft import LoraConfig, PromptTuningConfig, get_peft_model

    root = tmp_path_factory.mktemp("peft_bert")
    dirs = {}
    for i, name in enumerate(("prompt1", "prompt2")):
        torch.manual_seed(10 + i)
        cfg = PromptTuningConfig(task_type="FEATURE_EXTRACTION", num_virtual_tokens=3)
        model = get_peft_model(_bert(), cfg)
        model.save_pretrained(root / name)
        dirs[name] = root / name
    torch.manual_seed(20)
    cfg = LoraConfig(r=2, lora_alpha=4, target_modules=["query", "value", "intermediate.dense"],
                     init_lora_weights=False)
    get_peft_model(_bert(), cfg).save_pretrained(root / "lora_b")
    dirs["lora_b"] = root / "lora_b"
    return dirs


def _prompt(path):
    return load_file(str(path / "adapter_model.safetensors"))["prompt_embeddings"]


def _lora_b(path):
    raw = {k.replace("base_model.model.", ""): v for k, v in load_file(str(path / "adapter_model.safetensors")).items()}
    return lora_deltas(raw, 4 / 2)


def _lora_a():
    return lora_deltas(load_file(str(LORA_A / "adapter.safetensors")), 8 / 4)


def _inputs():
    ref = load_reference(ADAPTERS / "lora")
    return {"input_ids": ref["input_ids"], "attention_mask": ref["attention_mask"]}


def _out(am, inputs):
    with torch.no_grad():
        return am(**inputs).last_hidden_state


def _mixed(peft_dirs, *extra: str) -> AdapterModel:
    am = AdapterModel(_bert())
    am.load_adapter(LORA_A, name="lora_a")
    am.load_adapter(BN_A, name="bn_a")
    am.load_adapter(peft_dirs["prompt1"], name="p1")
    for name in extra:
        if name == "bn_b":
            am.load_adapter(ADAPTERS / "stack_seqbn" / "a", name="bn_b", allow_pickle=True)
        else:
            am.load_adapter(peft_dirs[name], name=name)
    return am


# -- the references themselves agree with the libraries --------------------------------------------


def test_hand_references_reproduce_adapters_and_peft(peft_dirs):
    from peft import PeftModel

    inputs = _inputs()
    lora_ref = load_reference(ADAPTERS / "lora")["expected"]
    assert torch.allclose(reference_bert(inputs, lora=[(_lora_a(), 1.0)]), lora_ref, atol=ATOL, rtol=0)
    bn_ref = load_reference(ADAPTERS / "seq_bn")["expected"]
    assert torch.allclose(reference_bert(inputs, bn_stack=[_raw_bn(BN_A)]), bn_ref, atol=ATOL, rtol=0)
    stack_ref = load_reference(ADAPTERS / "stack_seqbn")
    got = reference_bert({k: stack_ref[k] for k in ("input_ids", "attention_mask")},
                         bn_stack=[_raw_bn(ADAPTERS / "stack_seqbn" / n) for n in "ab"])
    assert torch.allclose(got, stack_ref["expected"], atol=ATOL, rtol=0)
    for name, kwargs in (("prompt1", {"prompt": _prompt(peft_dirs["prompt1"])}),
                         ("lora_b", {"lora": [(_lora_b(peft_dirs["lora_b"]), 1.0)]})):
        peft_model = PeftModel.from_pretrained(_bert(), str(peft_dirs[name])).eval()
        with torch.no_grad():
            expected = peft_model(**inputs).last_hidden_state
        assert torch.allclose(reference_bert(inputs, **kwargs), expected, atol=ATOL, rtol=0), name


# -- Stack / Average / Parallel / BatchSplit across methods -----------------------------------------


def test_stack_of_lora_bottleneck_and_prompt_matches_composed_math(peft_dirs):
    inputs = _inputs()
    am = _mixed(peft_dirs, "bn_b", "lora_b")
    am.set_adapter(Stack("lora_a", "bn_a", "p1"))
    expected = reference_bert(inputs, lora=[(_lora_a(), 1.0)], bn_stack=[_raw_bn(BN_A)],
                              prompt=_prompt(peft_dirs["prompt1"]))
    assert torch.allclose(_out(am, inputs), expected, atol=ATOL, rtol=0)
    # two adapters of each of LoRA and bottleneck: LoRA deltas add up, bottlenecks run in order
    am.set_adapter(Stack("lora_a", "lora_b", "bn_a", "bn_b", "p1"))
    expected = reference_bert(
        inputs, lora=[(_lora_a(), 1.0), (_lora_b(peft_dirs["lora_b"]), 1.0)],
        bn_stack=[_raw_bn(BN_A), _raw_bn(ADAPTERS / "stack_seqbn" / "a")], prompt=_prompt(peft_dirs["prompt1"]))
    assert torch.allclose(_out(am, inputs), expected, atol=ATOL, rtol=0)


def test_average_blocks_inside_a_mixed_stack(peft_dirs):
    inputs = _inputs()
    am = _mixed(peft_dirs, "bn_b", "lora_b")
    am.set_adapter(Stack(Average("lora_a", "lora_b", weights=[3, 1]), Average("bn_a", "bn_b"), "p1"))
    expected = reference_bert(
        inputs, lora=[(_lora_a(), 0.75), (_lora_b(peft_dirs["lora_b"]), 0.25)],
        bn_average=[(_raw_bn(BN_A), 0.5), (_raw_bn(ADAPTERS / "stack_seqbn" / "a"), 0.5)],
        prompt=_prompt(peft_dirs["prompt1"]))
    assert torch.allclose(_out(am, inputs), expected, atol=ATOL, rtol=0)


def test_parallel_and_batch_split_across_methods(peft_dirs):
    inputs = _inputs()
    am = _mixed(peft_dirs, "bn_b", "lora_b", "prompt2")
    ref_a = reference_bert(inputs, lora=[(_lora_a(), 1.0)], bn_stack=[_raw_bn(BN_A)])
    ref_b = reference_bert(inputs, lora=[(_lora_b(peft_dirs["lora_b"]), 1.0)],
                           bn_stack=[_raw_bn(ADAPTERS / "stack_seqbn" / "a")])
    am.set_adapter(Parallel(Stack("lora_a", "bn_a"), Stack("lora_b", "bn_b")))
    out = _out(am, inputs)
    assert out.shape[0] == 6
    assert torch.allclose(out[:3], ref_a, atol=ATOL, rtol=0) and torch.allclose(out[3:], ref_b, atol=ATOL, rtol=0)

    am.set_adapter(BatchSplit(Stack("lora_a", "bn_a", "p1"), Stack("lora_b", "bn_b", "prompt2"), batch_sizes=[1, 2]))
    out = _out(am, inputs)
    first = reference_bert({k: v[:1] for k, v in inputs.items()}, lora=[(_lora_a(), 1.0)],
                           bn_stack=[_raw_bn(BN_A)], prompt=_prompt(peft_dirs["prompt1"]))
    rest = reference_bert({k: v[1:] for k, v in inputs.items()}, lora=[(_lora_b(peft_dirs["lora_b"]), 1.0)],
                          bn_stack=[_raw_bn(ADAPTERS / "stack_seqbn" / "a")], prompt=_prompt(peft_dirs["prompt2"]))
    assert torch.allclose(out, torch.cat([first, rest]), atol=ATOL, rtol=0)


def test_impossible_combinations_name_the_method_and_block(peft_dirs):
    inputs = _inputs()
    am = _mixed(peft_dirs, "prompt2", "lora_b")
    am.add_adapter("bias", "bitfit")
    am.set_adapter(Stack("lora_a", "bn_a"))
    before = _out(am, inputs)
    cases = [
        (Average("lora_a", "bn_a"), ["Average", "bottleneck", "lora"]),
        (Stack("bn_a", Average("p1", "prompt2")), ["Average", "prompt_tuning"]),
        (BatchSplit("lora_a", "bias", batch_sizes=[1, 2]), ["BatchSplit", "bitfit"]),
        (Parallel("lora_a", "bias"), ["Parallel", "bitfit"]),
        (BatchSplit(Stack("lora_a", "p1"), "lora_b", batch_sizes=[1, 2]), ["BatchSplit", "prompt_tuning"]),
    ]
    for setup, words in cases:
        with pytest.raises(CompositionError) as info:
            am.set_adapter(setup)
        message = str(info.value)
        assert all(w in message for w in words), (setup, message)
        # a refused setup leaves the previous one in force
        assert am.active_setup == Stack("lora_a", "bn_a")
        assert torch.allclose(_out(am, inputs), before, atol=0, rtol=0)


def test_lora_and_ia3_split_a_batch_by_rows():
    """IA3 serves rows separately too (PEFT cannot): each slice equals its adapter alone."""
    from transformers import GPT2LMHeadModel

    am = AdapterModel(GPT2LMHeadModel.from_pretrained(str(BASE / "tiny-gpt2")).eval())
    am.load_adapter(PEFT / "lora", name="lora")
    am.load_adapter(PEFT / "ia3", name="ia3")
    ref = load_reference(PEFT / "lora")
    inputs = {"input_ids": ref["input_ids"][:1].repeat(3, 1), "attention_mask": ref["attention_mask"][:1].repeat(3, 1)}
    am.set_adapter(BatchSplit("lora", "ia3", batch_sizes=[1, 2]))
    with torch.no_grad():
        mixed = am(**inputs).logits
        am.set_adapter("lora")
        lora = am(**inputs).logits
        am.set_adapter("ia3")
        ia3 = am(**inputs).logits
    assert torch.allclose(mixed[:1], lora[:1], atol=ATOL, rtol=0)
    assert torch.allclose(mixed[1:], ia3[1:], atol=ATOL, rtol=0)
    assert not torch.allclose(lora, ia3, atol=1e-3)


# -- LoRA + IA3: PEFT's nested result and the math --------------------------------------------------


@pytest.mark.parametrize("order", [("lora", "ia3"), ("ia3", "lora")])
def test_lora_plus_ia3_equals_peft_nested_and_math(order):
    """The adapter loaded later wraps the earlier one's layer, as a second PeftModel on the same model does."""
    from peft import PeftModel
    from transformers import GPT2LMHeadModel

    def gpt2():
        return GPT2LMHeadModel.from_pretrained(str(BASE / "tiny-gpt2")).eval()

    ref = load_reference(PEFT / "lora")
    inputs = {"input_ids": ref["input_ids"], "attention_mask": ref["attention_mask"]}
    am = AdapterModel(gpt2())
    for name in order:
        am.load_adapter(PEFT / name, name=name)
    am.set_adapter(Stack(*order))
    with torch.no_grad():
        ours = am(**inputs).logits

    outer = PeftModel.from_pretrained(gpt2(), str(PEFT / order[0]))
    PeftModel.from_pretrained(outer.base_model.model, str(PEFT / order[1]))
    with torch.no_grad():
        nested = outer(**inputs).logits
    assert torch.allclose(ours, nested, atol=ATOL, rtol=0)

    # by hand: fold both into the Conv1D weights ([in, out]) of a plain copy
    lora = {k.replace("base_model.model.", ""): v for k, v in load_file(str(PEFT / "lora" / "adapter_model.safetensors")).items()}
    ia3 = {k.replace("base_model.model.", "")[: -len(".ia3_l")]: v
           for k, v in load_file(str(PEFT / "ia3" / "adapter_model.safetensors")).items()}
    model = gpt2()
    with torch.no_grad():
        for path, vector in ia3.items():
            module = model.get_submodule(path)
            if path.endswith("mlp.c_proj"):  # feed-forward: scales the input (rows of [in, out])
                module.weight *= vector.reshape(-1, 1)
            else:
                lora_delta = 16 / 8 * (lora[f"{path}.lora_B.weight"] @ lora[f"{path}.lora_A.weight"]).T
                scale = vector.reshape(1, -1)
                if order[0] == "lora":  # IA3 outside: (x(W + dW) + b) * l
                    module.weight.copy_((module.weight + lora_delta) * scale)
                else:  # LoRA outside: (xW + b) * l + x dW
                    module.weight.copy_(module.weight * scale + lora_delta)
                module.bias *= scale.reshape(-1)
        by_hand = model(**inputs).logits
    assert torch.allclose(ours, by_hand, atol=1e-4, rtol=0)
    assert not torch.allclose(ours, ref["expected"], atol=1e-3)  # IA3 really acted on top of LoRA


# -- saving a mixed setup, merging and unloading -----------------------------------------------------


def test_mixed_setup_round_trip(peft_dirs, tmp_path):
    inputs = _inputs()
    am = _mixed(peft_dirs, "lora_b")
    am.add_adapter("bn_new", "bottleneck", reduction_factor=8, init_weights="bert")
    setup = Stack(Average("lora_a", "lora_b", weights=[1, 2]), "bn_a", "bn_new", "p1")
    am.set_adapter(setup)
    expected = _out(am, inputs)
    path = am.save_setup(tmp_path / "setup.json")
    fresh = AdapterModel(_bert())
    fresh.load_setup(path)
    assert fresh.active_setup == setup
    assert {n: i.method for n, i in fresh.adapters.items()} == {
        "lora_a": "lora", "bn_a": "bottleneck", "p1": "prompt_tuning", "lora_b": "lora", "bn_new": "bottleneck"}
    assert torch.allclose(_out(fresh, inputs), expected, atol=1e-6, rtol=0)


def test_merge_refusal_and_unload_restore_pristine_base(peft_dirs):
    inputs = _inputs()
    am = _mixed(peft_dirs, "lora_b", "bn_b")
    pristine = _bert().state_dict()
    am.add_adapter("bias", "bitfit")
    am.set_adapter(Stack("lora_a", "bn_a", "p1"))
    with pytest.raises(UnsupportedOperationError) as info:
        am.merge_adapter()  # the bottleneck cannot be folded into weights: it must say so, not skip it
    assert "bottleneck" in str(info.value) and "bn_a" in str(info.value)
    assert not am.merged
    with pytest.raises(UnsupportedOperationError) as info:
        am.merge_adapter(["p1"])
    assert "prompt_tuning" in str(info.value)
    before = _out(am, inputs)
    am.merge_adapter(["lora_a"])  # the mergeable part of the stack merges; outputs unchanged
    assert torch.allclose(_out(am, inputs), before, atol=ATOL, rtol=0)
    model = am.unload()
    assert not am.adapters
    state = model.state_dict()
    assert set(state) == set(pristine) and all(torch.equal(state[k], pristine[k]) for k in pristine)
    assert [type(m).__name__ for m in model.modules()] == [type(m).__name__ for m in _bert().modules()]
    assert state_hash(model) == state_hash(_bert())
    assert not model._forward_hooks and not model._forward_pre_hooks
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
