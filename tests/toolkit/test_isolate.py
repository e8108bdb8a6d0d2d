"""Loading one more adapter hides the adapters already loaded from PEFT's walks (toolkit/peft/isolate):
what PEFT walks does not grow with the adapters loaded, and nothing about those adapters changes,
whether the load succeeds, fails or is interrupted."""

from __future__ import annotations

import warnings

import peft
import pytest
import torch
from peft import IA3Config, LoraConfig, PeftModel

from adapterhub import AdapterModel
from adapterhub.errors import AdapterHubError
from adapterhub.runtime.transaction import fingerprint
from adapterhub.testing import save_peft_adapter, tiny_gpt2, tiny_inputs
from adapterhub.toolkit.peft import others_hidden
from adapterhub.toolkit.structure import forget_structure

TARGETS = ["c_attn", "c_proj", "c_fc"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Five LoRAs (one of them DoRA, one rsLoRA) and an IA3, saved by PEFT, random weights."""
    root = tmp_path_factory.mktemp("isolate")
    base = tiny_gpt2()
    configs = {f"l{i}": LoraConfig(r=2 + i, lora_alpha=4, target_modules=TARGETS, fan_in_fan_out=True,
                                   use_dora=i == 1, use_rslora=i == 2) for i in range(5)}
    configs["ia"] = IA3Config(target_modules=["c_attn", "c_fc"], feedforward_modules=["c_fc"], fan_in_fan_out=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {name: save_peft_adapter(base, config, root / name, seed=i) for i, (name, config) in enumerate(configs.items())}


def _lora_layers(model):
    from peft.tuners.lora import LoraLayer

    return [m for m in model.modules() if isinstance(m, LoraLayer)]


def test_peft_walks_the_same_model_for_the_2nd_and_the_5th_adapter(folders, monkeypatch):
    seen = []
    inject = peft.inject_adapter_in_model

    def counting(config, model, *args, **kwargs):
        seen.append((len(list(model.named_modules())), len(list(model.named_parameters()))))
        return inject(config, model, *args, **kwargs)

    monkeypatch.setattr(peft, "inject_adapter_in_model", counting)
    am = AdapterModel(tiny_gpt2())
    for name in ["l0", "l3", "l4", "l0", "l3"]:
        am.load_adapter(folders[name], name=f"{name}_{len(seen)}")
    assert len(seen) == 5
    assert seen[1] == seen[2] == seen[3] == seen[4], seen  # the other adapters are not walked
    assert len(list(am.model.named_modules())) > seen[4][0] + 4 * 3 * len(_lora_layers(am.model))


def test_every_adapter_loaded_next_to_others_equals_peft(folders):
    """Each adapter, active alone, gives PEFT's output for that adapter (PEFT loading all of them)."""
    names = ["l0", "l1", "l2", "ia", "l3"]
    am = AdapterModel(tiny_gpt2())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = PeftModel.from_pretrained(tiny_gpt2(), str(folders["l0"]), adapter_name="l0")
        for name in names[1:]:
            if name != "ia":
                pm.load_adapter(str(folders[name]), adapter_name=name)
    for name in names[:3]:
        am.load_adapter(folders[name], name=name)
    for layer in _lora_layers(am.model):  # PEFT's order: the order of loading
        assert list(layer.lora_A) == names[:3]
    for name in names[3:]:  # l3 wraps the IA3 layers (which wrap the first LoRA layers), as in PEFT
        am.load_adapter(folders[name], name=name)
    inputs = tiny_inputs()
    with torch.no_grad():
        for name in [n for n in names if n != "ia"]:
            am.set_adapter(name)
            pm.set_adapter(name)
            torch.testing.assert_close(am(**inputs).logits, pm(**inputs).logits, atol=1e-5, rtol=0)
        am.set_adapter("ia")  # IA3 wrapped around LoRA layers loaded before and after it
        reference = AdapterModel(tiny_gpt2())
        reference.load_adapter(folders["ia"], name="ia")
        reference.set_adapter("ia")
        torch.testing.assert_close(am(**inputs).logits, reference(**inputs).logits, atol=1e-5, rtol=0)


def test_a_trainable_adapter_stays_trainable_when_others_load(folders):
    am = AdapterModel(tiny_gpt2())
    am.add_adapter("t", "lora", r=2, target_modules=["c_attn"], fan_in_fan_out=True)
    am.set_trainable(["t"])
    trainable = {n for n, p in am.model.named_parameters() if p.requires_grad}
    assert trainable and all(".t." in n for n in trainable)
    am.load_adapter(folders["l0"], name="f")
    am.set_adapter("t")
    assert {n for n, p in am.model.named_parameters() if p.requires_grad} == trainable


def _outputs(am, names):
    inputs = tiny_inputs()
    out = {}
    with torch.no_grad():
        for name in names:
            am.set_adapter(name)
            out[name] = am(**inputs).logits
    return out


@pytest.mark.parametrize("failure", ["missing_tensor", "interrupt"])
def test_a_failed_load_among_others_leaves_them_exactly_as_they_were(folders, tmp_path, monkeypatch, failure):
    am = AdapterModel(tiny_gpt2())
    for name in ["l0", "l1"]:
        am.load_adapter(folders[name], name=name)
    before_outputs = _outputs(am, ["l0", "l1"])
    forget_structure(am.model)
    before = fingerprint(am.model)
    containers = {id(layer): {a: (getattr(layer, a), list(getattr(layer, a))) for a in ("lora_A", "lora_B", "lora_dropout")}
                  for layer in _lora_layers(am.model)}
    source = folders["l2"]
    if failure == "missing_tensor":
        from safetensors.torch import load_file, save_file

        broken = tmp_path / "broken"
        broken.mkdir()
        (broken / "adapter_config.json").write_text((source / "adapter_config.json").read_text())
        state = load_file(str(source / "adapter_model.safetensors"))
        del state[next(k for k in sorted(state) if k.endswith("lora_B.weight"))]
        save_file(state, str(broken / "adapter_model.safetensors"))
        source, expected = broken, AdapterHubError
    else:
        def interrupted(*args, **kwargs):
            raise KeyboardInterrupt

        monkeypatch.setattr(peft, "set_peft_model_state_dict", interrupted)
        expected = KeyboardInterrupt
    with pytest.raises(expected):
        am.load_adapter(source, name="l2")
    forget_structure(am.model)
    assert fingerprint(am.model).same_as(before)
    for layer in _lora_layers(am.model):
        for attribute, (container, keys) in containers[id(layer)].items():
            assert getattr(layer, attribute) is container and list(container) == keys
    assert list(am.adapters) == ["l0", "l1"]
    after = _outputs(am, ["l0", "l1"])
    for name, logits in before_outputs.items():
        assert torch.equal(after[name], logits)
    monkeypatch.undo()
    am.load_adapter(folders["l2"], name="l2")  # and the model takes it afterwards
    assert all(list(layer.lora_A) == ["l0", "l1", "l2"] for layer in _lora_layers(am.model))


def test_others_hidden_swaps_and_merges_back_in_order():
    layer = torch.nn.Module()
    layer.adapter_layer_names, layer.other_param_names = ("lora_A", "emb"), ("r", "drop")
    layer.lora_A = torch.nn.ModuleDict({"a": torch.nn.Linear(2, 2), "b": torch.nn.Linear(2, 2)})
    layer.emb = torch.nn.ParameterDict({"a": torch.nn.Parameter(torch.ones(2))})
    layer.drop = torch.nn.ModuleDict()  # empty: left alone
    layer.r = {"a": 1, "b": 1}
    original_a, original_emb, kept = layer.lora_A, layer.emb, list(layer.lora_A.values())
    with others_hidden([layer]) as originals:
        assert len(layer.lora_A) == 0 and len(layer.emb) == 0 and layer.lora_A is not original_a
        assert originals[id(layer.lora_A)] is original_a and layer.r == {"a": 1, "b": 1}
        layer.lora_A["c"] = torch.nn.Linear(2, 2)
        layer.emb["c"] = torch.nn.Parameter(torch.zeros(2))
    assert layer.lora_A is original_a and list(layer.lora_A) == ["a", "b", "c"]
    assert list(layer.lora_A.values())[:2] == kept
    assert layer.emb is original_emb and list(layer.emb) == ["a", "c"]
    assert [n for n, _ in layer.named_modules()] == ["", "lora_A", "lora_A.a", "lora_A.b", "lora_A.c", "emb", "drop"]
    with pytest.raises(RuntimeError), others_hidden([layer]):
        layer.lora_A["d"] = torch.nn.Linear(2, 2)
        raise RuntimeError("boom")
    assert layer.lora_A is original_a and list(layer.lora_A) == ["a", "b", "c", "d"]  # the caller purges "d"
