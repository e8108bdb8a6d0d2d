"""Fast adapter switching stays correct (cached layer lists, skipped unchanged methods), and merging
part of the active setup is refused instead of silently dropping adapters. References come from PEFT."""

from __future__ import annotations

import copy

import pytest
import torch
from support.fixtures import logits

from adapterhub import AdapterModel, Average, BatchSplit, Stack
from adapterhub.errors import UnsupportedOperationError
from adapterhub.testing import save_peft_adapter, state_dict_copy, state_dicts_equal

#: compared with outputs PEFT or `adapters` produced: run by .ci/compat on every transformers release
pytestmark = pytest.mark.fidelity

ATOL = 1e-5


def _config(**kw):
    from peft import LoraConfig

    return LoraConfig(**({"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj", "down_proj"]} | kw))


@pytest.fixture(scope="module")
def three(llama_base, tmp_path_factory):
    root = tmp_path_factory.mktemp("three")
    return {
        "a": save_peft_adapter(llama_base, _config(), root / "a", seed=31),
        "b": save_peft_adapter(llama_base, _config(target_modules=["q_proj", "k_proj"]), root / "b", seed=32),
        "c": save_peft_adapter(llama_base, _config(r=2), root / "c", seed=33),
    }


@pytest.fixture(scope="module")
def peft_refs(llama_base, three, inputs):
    """Outputs PEFT computes for each adapter alone and for Stack(a, b)."""
    from peft import PeftModel

    model = PeftModel.from_pretrained(copy.deepcopy(llama_base), str(three["a"]), adapter_name="a")
    for n in ("b", "c"):
        model.load_adapter(str(three[n]), adapter_name=n)
    refs = {}
    for n in ("a", "b", "c"):
        model.set_adapter(n)
        refs[n] = logits(model, inputs)
    model.base_model.set_adapter(["a", "b"], inference_mode=True)
    refs["ab"] = logits(model, inputs)
    with model.disable_adapter():
        refs[None] = logits(model, inputs)
    model.set_adapter("a")
    model.merge_adapter(["a"])
    refs["a_merged"] = logits(model, inputs)
    return refs


def test_switching_back_and_forth_matches_peft(llama_base, three, peft_refs, inputs):
    am = AdapterModel(copy.deepcopy(llama_base))
    am.load_adapter(three["a"], name="a")
    am.load_adapter(three["b"], name="b")
    for setup, ref in [("a", "a"), ("b", "b"), ("a", "a"), (["a", "b"], "ab"), (None, None), ("b", "b"),
                       (Average("a", "b", weights=[1, 1]), None), (["a", "b"], "ab"), ("a", "a")]:
        am.set_adapter(setup)
        if ref is not None or setup is None:
            torch.testing.assert_close(logits(am, inputs), peft_refs[ref], atol=ATOL, rtol=0, msg=repr(setup))
    # a load after many switches changes the layers: the next switch must see the new adapter
    am.load_adapter(three["c"], name="c")
    am.set_adapter("c")
    torch.testing.assert_close(logits(am, inputs), peft_refs["c"], atol=ATOL, rtol=0)
    am.set_adapter("b")
    am.delete_adapter("c")
    torch.testing.assert_close(logits(am, inputs), peft_refs["b"], atol=ATOL, rtol=0)
    am.set_adapter("a")
    torch.testing.assert_close(logits(am, inputs), peft_refs["a"], atol=ATOL, rtol=0)
    # a BatchSplit served twice in a row (the second dispatch is skipped) still splits the batch
    am.set_adapter(BatchSplit("a", "b", batch_sizes=[2, 1]))
    for _ in range(2):
        out = logits(am, inputs)
        torch.testing.assert_close(out[:2], peft_refs["a"][:2], atol=ATOL, rtol=0)
        torch.testing.assert_close(out[2:], peft_refs["b"][2:], atol=ATOL, rtol=0)


def test_merging_part_of_the_active_setup_is_refused(llama_base, three, peft_refs, inputs):
    am = AdapterModel(copy.deepcopy(llama_base))
    am.load_adapter(three["a"], name="a")
    am.load_adapter(three["b"], name="b")
    pristine = state_dict_copy(am.model)
    am.set_adapter(Stack("a", "b"))
    with pytest.raises(UnsupportedOperationError, match=r"\['b'\] would stay unmerged") as err:
        am.merge_adapter(["a"])
    assert "set_adapter(['a'])" in str(err.value)
    am.set_adapter("b")
    with pytest.raises(UnsupportedOperationError, match=r"\['b'\]"):
        am.merge_adapter(["a"])  # an inactive adapter merged under an active one would drop the active one
    am.set_adapter(BatchSplit("a", "b", batch_sizes=[1, 2]))
    with pytest.raises(UnsupportedOperationError, match="slices of the batch"):
        am.merge_adapter()
    # nothing was merged by the refused calls
    assert am.merged == {} and state_dicts_equal(pristine, state_dict_copy(am.model))
    am.set_adapter(Stack("a", "b"))
    torch.testing.assert_close(logits(am, inputs), peft_refs["ab"], atol=ATOL, rtol=0)
    # the supported ways: merge exactly the active adapters
    am.set_adapter("a")
    am.merge_adapter(["a"])
    torch.testing.assert_close(logits(am, inputs), peft_refs["a_merged"], atol=ATOL, rtol=0)
    am.unmerge_adapter()
    am.set_adapter(Stack("a", "b"))
    am.merge_adapter()
    torch.testing.assert_close(logits(am, inputs), peft_refs["ab"], atol=ATOL, rtol=0)
    am.unmerge_adapter()
    assert state_dicts_equal(pristine, state_dict_copy(am.model))


def test_loaded_adapter_follows_the_models_eval_mode(tmp_path):
    """A model in eval mode must not run adapter dropout after load_adapter (PEFT sets eval too)."""
    import torch
    from peft import PeftModel

    from adapterhub import AdapterModel
    from adapterhub.testing import save_peft_adapter, tiny_bert, tiny_inputs

    from peft import LoraConfig

    config = LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"], lora_dropout=0.5)
    adapter_dir = save_peft_adapter(tiny_bert(), config, tmp_path / "drop")
    inputs = tiny_inputs()
    base = tiny_bert().eval()
    am = AdapterModel(base)
    am.set_adapter(am.load_adapter(adapter_dir))
    assert not any(m.training for m in am.model.modules())
    with torch.no_grad():
        first = am(**inputs).last_hidden_state
        second = am(**inputs).last_hidden_state
    torch.testing.assert_close(first, second, atol=0, rtol=0)
    reference = PeftModel.from_pretrained(tiny_bert(), adapter_dir).eval()
    with torch.no_grad():
        torch.testing.assert_close(first, reference(**inputs).last_hidden_state, atol=1e-5, rtol=0)
