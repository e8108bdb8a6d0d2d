"""Training through AdapterModel for every method here, and merging / unloading (BitFit, IA3, refusals)."""

from __future__ import annotations

import pytest
import torch
from support.fixtures import ADAPTERS, BASE, PEFT, load_reference, state_hash

from adapterhub import AdapterModel
from adapterhub.errors import UnsupportedOperationError
from adapterhub.plugin import get_method

#: parameters that belong to injected adapters, not to the base
ADAPTER_KEYS = ("adapters.", "adapterhub_")


def _bert():
    from transformers import BertModel

    return BertModel.from_pretrained(str(BASE / "tiny-bert")).eval()


def _inputs():
    ref = load_reference(ADAPTERS / "seq_bn")
    return {"input_ids": ref["input_ids"], "attention_mask": ref["attention_mask"]}


def _train(am, inputs, steps=3):
    params = [p for p in am.model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.5)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = am(**inputs).last_hidden_state[:, :, :8].sum()
        loss.backward()
        optimizer.step()


CONFIGS = {
    "bottleneck": {"reduction_factor": 8},
    "bitfit": {},
    "prompt_tuning": {"num_virtual_tokens": 3},
    "prefix_tuning": {"num_virtual_tokens": 3},
    "p_tuning": {"num_virtual_tokens": 3, "encoder_hidden_size": 16},
}


@pytest.mark.parametrize("method", sorted(CONFIGS))
def test_training_changes_only_that_adapter(method, tmp_path):
    inputs = _inputs()
    torch.manual_seed(0)
    am = AdapterModel(_bert())
    pristine = state_hash(am.model)
    am.add_adapter("other", "bottleneck", reduction_factor=16)  # loaded beside it, must stay as it is
    other = {k: v.clone() for k, v in am.model.state_dict().items() if ".adapters.other." in k}
    am.add_adapter("mine", method, **CONFIGS[method])
    am.set_adapter("mine")
    impl = get_method(method)
    mine = {id(p) for p in impl.parameters(am.model, "mine")}
    trainable = {id(p) for p in am.model.parameters() if p.requires_grad}
    assert mine and mine <= trainable
    before = {n: p.detach().clone() for n, p in am.model.named_parameters() if id(p) in mine}
    with torch.no_grad():
        untrained = am(**inputs).last_hidden_state
    _train(am, inputs)
    after = dict(am.model.named_parameters())
    assert any(not torch.equal(after[n], v) for n, v in before.items()), "no parameter of the adapter moved"
    assert all(torch.equal(am.model.state_dict()[k], v) for k, v in other.items())
    with torch.no_grad():
        trained = am(**inputs).last_hidden_state
    assert not torch.allclose(trained, untrained, atol=1e-6)

    if method == "bitfit":
        # {} trains every bias of the base and nothing else
        biases = {n for n, _ in am.model.named_parameters() if n.endswith(".bias") and ".adapters." not in n}
        assert {n for n, p in am.model.named_parameters() if id(p) in mine} == biases
        assert state_hash(am.model, exclude=(*ADAPTER_KEYS, ".bias")) == state_hash(_bert(), exclude=(".bias",))
    else:
        assert state_hash(am.model, exclude=ADAPTER_KEYS) == pristine

    # what was trained is what gets saved: a fresh model reproduces the trained output
    fmt = "adapters" if method == "bottleneck" else "peft"
    am.save_adapter(tmp_path / "mine", "mine", format=fmt)
    fresh = AdapterModel(_bert())
    fresh.load_adapter(tmp_path / "mine", name="mine")
    fresh.set_adapter("mine")
    with torch.no_grad():
        assert torch.allclose(fresh(**inputs).last_hidden_state, trained, atol=1e-5, rtol=0)

    if method == "bitfit":
        before_merge = trained
        am.merge_adapter()
        with torch.no_grad():
            assert torch.allclose(am(**inputs).last_hidden_state, before_merge, atol=1e-5, rtol=0)
        am.unmerge_adapter()
    else:
        with pytest.raises(UnsupportedOperationError) as info:
            am.merge_adapter()
        assert method in str(info.value) and "merge" in str(info.value)
        assert not am.merged
    am.unload()
    assert state_hash(am.model) == pristine
    assert not any(p.requires_grad is False for p in am.model.parameters())  # base flags restored


def test_bitfit_merge_and_unload_keeps_the_trained_biases():
    inputs = _inputs()
    am = AdapterModel(_bert())
    am.add_adapter("b", "bitfit", target_modules=["output.dense"])
    trained_names = {n for n, p in am.model.named_parameters() if p.requires_grad}
    assert trained_names == {f"encoder.layer.{i}.{m}.dense.bias" for i in range(2) for m in ("output", "attention.output")}
    _train(am, inputs)
    with torch.no_grad():
        expected = am(**inputs).last_hidden_state
    model = am.merge_and_unload()
    assert not am.adapters
    with torch.no_grad():
        assert torch.allclose(model(**inputs).last_hidden_state, expected, atol=1e-6, rtol=0)
    base = _bert().state_dict()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, base[k])}
    assert changed and changed <= trained_names


def test_ia3_merge_through_adapter_model():
    from transformers import GPT2LMHeadModel

    ref = load_reference(PEFT / "ia3")
    inputs = {"input_ids": ref["input_ids"], "attention_mask": ref["attention_mask"]}
    model = GPT2LMHeadModel.from_pretrained(str(BASE / "tiny-gpt2")).eval()
    pristine = {k: v.clone() for k, v in model.state_dict().items()}
    am = AdapterModel(model)
    am.load_adapter(PEFT / "ia3", name="ia3")
    am.set_adapter("ia3")
    am.merge_adapter()
    assert am.merged == {"ia3": 1.0}
    with torch.no_grad():
        assert torch.allclose(am(**inputs).logits, ref["expected"], atol=1e-4, rtol=0)
    am.unload()  # undoes the merge: the pristine base comes back
    assert {k: v for k, v in am.model.state_dict().items()}.keys() == pristine.keys()
    assert all(torch.equal(am.model.state_dict()[k], v) for k, v in pristine.items())

    am.load_adapter(PEFT / "ia3", name="ia3")
    am.set_adapter("ia3")
    plain = am.merge_and_unload()
    assert not any("ia3" in n for n, _ in plain.named_parameters())
    with torch.no_grad():
        assert torch.allclose(plain(**inputs).logits, ref["expected"], atol=1e-4, rtol=0)


@pytest.mark.parametrize("quantized", [False, True], ids=["fp32", "nf4"])
def test_trainable_parameter_counts_are_peft_s(quantized, capsys):
    """get_nb_trainable_parameters / print_trainable_parameters give what PEFT's PeftModel gives for
    the same LoRA on the same base (4-bit weights counted two per stored byte, as PEFT counts them)."""
    from peft import LoraConfig, get_peft_model

    from adapterhub import quantize_4bit

    def base():
        model = _bert()
        return quantize_4bit(model, "nf4") if quantized else model

    options = {"r": 4, "lora_alpha": 8, "target_modules": ["query", "value"]}
    peft_model = get_peft_model(base(), LoraConfig(**options))
    am = AdapterModel(base())
    am.add_adapter("x", "lora", **options)
    assert am.get_nb_trainable_parameters() == peft_model.get_nb_trainable_parameters()
    assert am.get_nb_trainable_parameters()[0] == 2 * 2 * 4 * (64 + 64)  # A and B, 2 layers, 2 modules
    peft_model.print_trainable_parameters()
    peft_line = capsys.readouterr().out
    am.print_trainable_parameters()
    assert capsys.readouterr().out == peft_line
