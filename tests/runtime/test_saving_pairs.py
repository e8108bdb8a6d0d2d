"""Saving one adapter while another method wraps the same modules (issue: a LoRA saved next to an IA3
got ``value.base_layer.lora_A.weight`` keys, which PEFT half-loaded and adapterhub refused).

For every pair of methods that can sit on one model, in both orders: both adapters are created on one
tiny BERT and given non-trivial weights; each one, active alone, is saved with ``save_adapter(dir,
name)`` (no format: the method's native one) and reloaded alone on a fresh base. adapterhub must give
exactly the output from before the save; where the file is PEFT's format, so must PEFT itself
(``PeftModel.from_pretrained``). Reloading both saved adapters together must reproduce the stacked
output too. LoRA variants (DoRA, rsLoRA, QLoRA on a 4-bit base) are paired with every method that
wraps or rewrites the same linear layers.
"""

from __future__ import annotations

import copy
import itertools
import json
import zlib

import pytest
import torch
from support.fixtures import BASE

from adapterhub import AdapterModel
from adapterhub.plugin import get_method

#: compared with outputs PEFT produced live from the saved files
pytestmark = pytest.mark.fidelity

#: variant -> (method, config). LoRA, DoRA, rsLoRA and IA3 all touch ``value``; IA3, rsLoRA and the
#: bottleneck adapters all touch the ``output.dense`` sub-layers; BitFit trains every bias under them.
VARIANTS = {
    "lora": ("lora", {"r": 4, "lora_alpha": 8, "target_modules": ["query", "value"]}),
    "dora": ("lora", {"r": 4, "lora_alpha": 8, "use_dora": True, "target_modules": ["value", "key"]}),
    "rslora": ("lora", {"r": 4, "lora_alpha": 8, "use_rslora": True, "target_modules": ["value", "output.dense"]}),
    "ia3": ("ia3", {"target_modules": ["key", "value", "output.dense"], "feedforward_modules": ["output.dense"]}),
    "bitfit": ("bitfit", {}),
    "bottleneck": ("bottleneck", {"reduction_factor": 8}),
    "prompt_tuning": ("prompt_tuning", {"num_virtual_tokens": 3}),
    "prefix_tuning": ("prefix_tuning", {"num_virtual_tokens": 3}),
    "p_tuning": ("p_tuning", {"num_virtual_tokens": 3, "encoder_hidden_size": 16}),
}
METHODS = ["lora", "ia3", "bitfit", "bottleneck", "prompt_tuning", "prefix_tuning", "p_tuning"]
#: DoRA and rsLoRA change how a LoRA layer computes: pair them with everything that shares its layers
LORA_VARIANTS = ["dora", "rslora"]
SHARING = ["lora", "ia3", "bitfit", "bottleneck"]

PAIRS = [
    *itertools.permutations(METHODS, 2),
    *[p for v in LORA_VARIANTS for other in SHARING for p in ((v, other), (other, v))],
    ("dora", "rslora"),
    ("rslora", "dora"),
]
#: on a 4-bit base: a LoRA there is a QLoRA; every other method beside it, both orders
QLORA_PAIRS = [p for other in ["ia3", "bitfit", "bottleneck", "prompt_tuning", "prefix_tuning", "p_tuning", "dora"]
               for p in (("qlora", other), (other, "qlora"))]

INPUTS = {
    "input_ids": torch.tensor([[2, 5, 7, 9, 11, 13], [3, 4, 6, 8, 10, 0]]),
    "attention_mask": torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0]]),
}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models gain nothing from intra-op threads, and on a shared, busy machine their spin-waits
    cost several times the work itself (measured here: 37 s of CPU with 2 threads, 9.5 s with 1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def bert_template():
    from transformers import BertModel

    return BertModel.from_pretrained(str(BASE / "tiny-bert")).eval()


@pytest.fixture(scope="module")
def bert_4bit_template(bert_template):
    from adapterhub import quantize_4bit

    return quantize_4bit(copy.deepcopy(bert_template), "nf4")


def _output(model):
    with torch.no_grad():
        out = model(**INPUTS)
    return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]


def _spec(variant):
    return VARIANTS["lora" if variant == "qlora" else variant]


def _give_weights(am, name):
    """What training would do: the adapter's own parameters move away from their initial values
    (LoRA's B and IA3's vectors start as the identity)."""
    generator = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    with torch.no_grad():
        for p in get_method(am.adapters[name].method).parameters(am.model, name):
            p.add_(torch.randn(p.shape, generator=generator) * 0.1)


def _check_pair(first, second, template, tmp_path):
    from peft import PeftModel

    am = AdapterModel(copy.deepcopy(template))
    pristine = _output(am)
    for name in (first, second):
        method, config = _spec(name)
        am.add_adapter(name, method, **config)
        am.set_adapter(name)  # trained while active, as a training loop would
        _give_weights(am, name)

    saved = {}
    for name in (first, second):
        am.set_adapter(name)
        before = _output(am)
        assert not torch.equal(before, pristine), f"{name}: the adapter does nothing; the check would be vacuous"
        folder = tmp_path / name
        am.save_adapter(folder, name)  # no format: the method's native one
        saved[name] = (folder, before)
        config = json.loads((folder / "adapter_config.json").read_text())
        if "peft_type" in config:
            from safetensors.torch import load_file

            keys = list(load_file(str(folder / "adapter_model.safetensors")))
            assert not [k for k in keys if "base_layer" in k], f"{name}: saved keys depend on the other wrapper"

        alone = AdapterModel(copy.deepcopy(template))
        alone.load_adapter(folder, name=name)
        alone.set_adapter(name)
        assert torch.equal(_output(alone), before), f"{name} saved beside {first if name == second else second}"

        if "peft_type" in config:  # PEFT's own loader must read the same adapter from the file
            peft_model = PeftModel.from_pretrained(copy.deepcopy(template), str(folder)).eval()
            assert torch.equal(_output(peft_model), before), f"PEFT reading {name} saved beside another method"

    # both saved adapters, loaded together on a fresh base, compose as the originals did
    am.set_adapter([first, second])
    stacked = _output(am)
    both = AdapterModel(copy.deepcopy(template))
    for name in (first, second):
        both.load_adapter(saved[name][0], name=name)
    both.set_adapter([first, second])
    torch.testing.assert_close(_output(both), stacked, atol=1e-6, rtol=0)


@pytest.mark.parametrize(("first", "second"), PAIRS, ids=[f"{a}+{b}" for a, b in PAIRS])
def test_each_adapter_of_a_pair_saves_and_reloads_alone(first, second, bert_template, tmp_path):
    _check_pair(first, second, bert_template, tmp_path)


@pytest.mark.parametrize(("first", "second"), QLORA_PAIRS, ids=[f"{a}+{b}" for a, b in QLORA_PAIRS])
def test_pairs_with_qlora_on_a_4bit_base(first, second, bert_4bit_template, tmp_path):
    _check_pair(first, second, bert_4bit_template, tmp_path)


def test_three_wrappers_deep(bert_template, tmp_path):
    """LoRA inside IA3 inside a DoRA LoRA: the innermost one's keys go through two ``base_layer``s."""
    am = AdapterModel(copy.deepcopy(bert_template))
    for name in ("lora", "ia3", "dora"):
        method, config = VARIANTS[name]
        am.add_adapter(name, method, **config)
        am.set_adapter(name)
        _give_weights(am, name)
    inner = "encoder.layer.0.attention.self.value.base_layer.base_layer.lora_A.lora.weight"
    assert inner in dict(am.model.named_parameters())  # the case this test is about
    am.set_adapter("lora")
    before = _output(am)
    am.save_adapter(tmp_path / "lora", "lora")
    fresh = AdapterModel(copy.deepcopy(bert_template))
    fresh.load_adapter(tmp_path / "lora", name="lora")
    fresh.set_adapter("lora")
    assert torch.equal(_output(fresh), before)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_save_without_a_format_writes_the_native_one(variant, bert_template, tmp_path):
    method, config = VARIANTS[variant]
    am = AdapterModel(copy.deepcopy(bert_template))
    am.add_adapter("a", method, **config)
    written = {p.name for p in am.save_adapter(tmp_path / "a", "a")}
    saved = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    if method == "bottleneck":  # PEFT has no bottleneck type: AdapterHub's format
        from adapterhub.toolkit.adapters_format import architecture, is_adapters_format

        assert is_adapters_format(saved) and architecture(saved) == "bottleneck" and "adapter.safetensors" in written
    elif method == "bitfit":
        assert saved["adapterhub_method"] == "bitfit" and "adapter_model.safetensors" in written
    else:
        assert saved["peft_type"] == get_method(method).peft_type and "adapter_model.safetensors" in written


def test_swapped_save_arguments_are_named(bert_template, tmp_path):
    """``save_adapter(save_directory, adapter_name)``: the name first is a clear error, not a new folder."""
    from adapterhub.errors import AdapterNotLoadedError

    am = AdapterModel(copy.deepcopy(bert_template))
    am.add_adapter("mine", "lora", r=2, target_modules=["query"])
    with pytest.raises(AdapterNotLoadedError, match="save_adapter\\(save_directory, adapter_name\\)"):
        am.save_adapter("mine", str(tmp_path / "out"))
    assert not (tmp_path / "out").exists() and not (tmp_path / "mine").exists()


def test_bitfit_targets_the_same_biases_whatever_wraps_them(bert_template):
    """BitFit names biases as a plain model does: a LoRA around ``value`` does not hide ``value.bias``."""
    plain = AdapterModel(copy.deepcopy(bert_template))
    expected = set(plain.add_adapter("b", "bitfit").state_dict)
    wrapped = AdapterModel(copy.deepcopy(bert_template))
    wrapped.add_adapter("l", "lora", r=2, target_modules=["value"])
    got = wrapped.add_adapter("b", "bitfit").state_dict
    assert set(got) == expected and "encoder.layer.0.attention.self.value.bias" in got
    wrapped.set_adapter("b")  # only active adapters train, as in PEFT
    trainable = {n for n, p in wrapped.model.named_parameters() if p.requires_grad}
    assert "encoder.layer.0.attention.self.value.base_layer.bias" in trainable


#: IA3 on attention only: the adapters library's IA3 cannot scale feed-forward inputs
ADAPTERS_FORMAT = {"lora": VARIANTS["lora"], "rslora": VARIANTS["rslora"], "dora": VARIANTS["dora"],
                   "ia3": ("ia3", {"target_modules": ["query", "value"], "feedforward_modules": []})}


@pytest.mark.parametrize(("first", "second"), [("lora", "ia3"), ("ia3", "lora"), ("dora", "ia3"), ("ia3", "rslora")])
def test_the_adapterhub_format_too(first, second, bert_template, tmp_path):
    """LoRA and IA3 also save in AdapterHub's format; wrapped by the other method, they reload alone."""
    am = AdapterModel(copy.deepcopy(bert_template))
    for name in (first, second):
        method, config = ADAPTERS_FORMAT[name]
        am.add_adapter(name, method, **config)
        am.set_adapter(name)
        _give_weights(am, name)
    for name in (first, second):
        if name in ("dora", "rslora"):
            continue  # the adapters library has neither DoRA nor rsLoRA: PEFT's format only (refused)
        am.set_adapter(name)
        before = _output(am)
        am.save_adapter(tmp_path / name, name, format="adapters")
        alone = AdapterModel(copy.deepcopy(bert_template))
        alone.load_adapter(tmp_path / name, name=name)
        alone.set_adapter(name)
        torch.testing.assert_close(_output(alone), before, atol=1e-6, rtol=0)
