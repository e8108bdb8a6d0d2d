"""Combined adapters against the libraries themselves: sources in both on-disk formats compared with
PEFT run live, the new adapter saved in PEFT's format and run by PEFT, and bottleneck weight
averaging against what ``adapters`` 1.3.0's ``average_adapter`` produced
(tests/fixtures/adapters-1.3.0-average, made by generate/make_adapters_average_fixtures.py)."""

from __future__ import annotations

import copy
import json
import warnings

import pytest
import torch
from safetensors.torch import load_file
from support.fixtures import ADAPTERS, FIXTURES, logits

from adapterhub import AdapterModel
from adapterhub.testing import save_peft_adapter

pytestmark = pytest.mark.fidelity

ATOL = 1e-5
WEIGHTS = [0.7, 0.5, -0.3]


def _peft_model(base, folders: dict):
    from peft import PeftModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        names = list(folders)
        model = PeftModel.from_pretrained(copy.deepcopy(base), str(folders[names[0]]), adapter_name=names[0])
        for n in names[1:]:
            model.load_adapter(str(folders[n]), adapter_name=n)
    return model.eval()


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """On tiny BERT: an AdapterHub-format LoRA saved by `adapters` and two PEFT LoRAs saved by PEFT."""
    from peft import LoraConfig
    from transformers import BertModel

    root = tmp_path_factory.mktemp("mixed")
    base = BertModel.from_pretrained(str(FIXTURES / "base" / "tiny-bert")).eval()
    folders = {
        "x": ADAPTERS / "lora_safetensors",
        "y": save_peft_adapter(base, LoraConfig(r=4, lora_alpha=16, target_modules=["query", "value"]), root / "y", seed=5),
        "z": save_peft_adapter(base, LoraConfig(r=2, lora_alpha=2, target_modules=["query", "key"]), root / "z", seed=6),
    }
    am = AdapterModel(copy.deepcopy(base))
    for name, folder in folders.items():
        am.load_adapter(str(folder), name=name)
    assert [am.adapters[n].format for n in "xyz"] == ["adapters", "peft", "peft"]
    am.save_adapter(root / "x_peft", "x", format="peft")  # the same LoRA, for PEFT to read
    peft_model = _peft_model(base, {"x": root / "x_peft", "y": folders["y"], "z": folders["z"]})
    return base, am, peft_model, root


@pytest.mark.parametrize(("combination_type", "kwargs"), [
    ("cat", {}), ("svd", {"svd_rank": 6}), ("ties_svd", {"density": 0.5, "svd_rank": 5}),
    ("magnitude_prune_svd", {"density": 0.6}),
])
def test_sources_in_both_formats_combine_as_peft_combines_them(mixed, combination_type, kwargs):
    from peft.tuners.lora import LoraLayer

    _, am, peft_model, _ = mixed
    name = f"m_{combination_type}"
    am.add_weighted_adapter(["x", "y", "z"], WEIGHTS, name, combination_type, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peft_model.add_weighted_adapter(["x", "y", "z"], WEIGHTS, name, combination_type, **kwargs)
    compared = 0
    for path, layer in peft_model.base_model.model.named_modules():
        if isinstance(layer, LoraLayer) and name in layer.lora_A:
            ours = am.model.get_submodule(path)
            expected = layer.get_delta_weight(name)
            assert (ours.get_delta_weight(name) - expected).abs().max().item() <= ATOL, path
            compared += 1
    assert compared == 6  # query and value in both layers, key in both layers


@pytest.mark.parametrize("combination_type", ["svd", "cat", "linear"])
def test_the_new_adapter_saved_in_peft_format_runs_in_peft(mixed, combination_type, tmp_path):
    base, am, _, _ = mixed
    name = f"saved_{combination_type}"
    am.add_weighted_adapter(["x", "y", "z"], WEIGHTS, name, combination_type,
                            **({"svd_rank": 5} if combination_type == "svd" else {}))
    inputs = {"input_ids": torch.tensor([[5, 17, 42, 9, 3], [3, 3, 71, 100, 0]]),
              "attention_mask": torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]])}
    am.set_adapter(name)
    ours = logits(am, inputs)
    am.set_adapter(None)
    files = am.save_adapter(tmp_path / name, name)
    assert {p.name for p in files} == {"adapter_config.json", "adapter_model.safetensors"}
    peft_model = _peft_model(base, {name: tmp_path / name})
    assert (logits(peft_model, inputs) - ours).abs().max().item() <= ATOL
    assert (ours - logits(base, inputs)).abs().max().item() > 1e-3
    again = AdapterModel(copy.deepcopy(base))  # and it loads back as a normal adapter
    again.set_adapter(again.load_adapter(tmp_path / name))
    assert (logits(again, inputs) - ours).abs().max().item() <= ATOL


@pytest.mark.parametrize("case", ["bert_seq_bn", "gpt2_double_seq_bn"])
def test_bottleneck_weight_averaging_matches_adapters_average_adapter(case):
    import transformers

    folder = FIXTURES / "adapters-1.3.0-average" / case
    meta = json.loads((folder / "case.json").read_text())
    ref = load_file(str(folder / "reference.safetensors"))
    inputs = {"input_ids": ref["input_ids"], "attention_mask": ref["attention_mask"]}
    base = getattr(transformers, meta["base_class"]).from_pretrained(str(FIXTURES / meta["base"])).eval()
    plain = getattr(base(**inputs), meta["output"]).detach()
    am = AdapterModel(base)
    for name in "abc":
        am.load_adapter(str(folder / name), name=name)
    am.add_weighted_adapter(list("abc"), meta["weights"], "m")  # the default: linear, for bottleneck adapters
    am.set_adapter("m")
    with torch.no_grad():
        out = getattr(am(**inputs), meta["output"])
    assert (out - ref["expected"]).abs().max().item() <= ATOL
    assert (ref["expected"] - plain).abs().max().item() > 1e-3, "the averaged adapter changes the output"
    am.load_adapter(str(folder / "avg"), name="theirs")
    from adapterhub.plugin import get_method

    method = get_method("bottleneck")
    mine, theirs = method.export(am.model, "m").state_dict, method.export(am.model, "theirs").state_dict
    assert mine.keys() == theirs.keys()
    assert max((mine[k] - theirs[k]).abs().max().item() for k in mine) <= 1e-6


def test_bottleneck_sources_must_share_a_configuration():
    from transformers import BertModel

    from adapterhub.errors import UnsupportedOperationError

    am = AdapterModel(BertModel.from_pretrained(str(FIXTURES / "base" / "tiny-bert")).eval())
    am.add_adapter("a", "bottleneck", preset="seq_bn")
    am.add_adapter("b", "bottleneck", preset="seq_bn", reduction_factor=8)
    am.add_adapter("c", "bottleneck", preset="seq_bn", dropout=0.1)  # dropout may differ, as in adapters
    with pytest.raises(UnsupportedOperationError, match="reduction_factor: 16 vs 8"):
        am.add_weighted_adapter(["a", "b"], [1, 1], "m")
    with pytest.raises(UnsupportedOperationError, match="sum to 0"):
        am.add_weighted_adapter(["a", "c"], [1, -1], "m")
    am.add_weighted_adapter(["a", "c"], [1, 3], "m")
    assert "m" in am.adapters


@pytest.mark.parametrize("combination_type", ["magnitude_prune_svd", "ties_svd"])
def test_pruning_breaks_ties_between_equal_values_as_peft_does(combination_type, tmp_path):
    """Integer factors give deltas full of equal magnitudes: which of them survive the pruning depends on
    their order, and PEFT prunes GPT-2's Conv1D deltas in the layer's (transposed) layout."""
    from peft import LoraConfig, get_peft_model
    from peft.tuners.lora import LoraLayer
    from transformers import GPT2LMHeadModel

    base = GPT2LMHeadModel.from_pretrained(str(FIXTURES / "base" / "tiny-gpt2")).eval()
    peft_model = None
    for name, seed in (("a", 1), ("b", 2)):
        config = LoraConfig(r=2, lora_alpha=2, target_modules=["c_attn", "c_fc"])
        if peft_model is None:
            peft_model = get_peft_model(copy.deepcopy(base), config, adapter_name=name)
        else:
            peft_model.add_adapter(name, config)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for pname, p in peft_model.named_parameters():
                if f".{name}." in pname:
                    p.copy_(torch.randint(-1, 2, p.shape, generator=g).float())
    peft_model.save_pretrained(str(tmp_path), selected_adapters=["a", "b"])
    am = AdapterModel(copy.deepcopy(base))
    for name in ("a", "b"):
        am.load_adapter(tmp_path / name, name=name)
    kwargs = {"density": 0.3, "svd_rank": 64}
    am.add_weighted_adapter(["a", "b"], [0.6, 0.8], "m", combination_type, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peft_model.add_weighted_adapter(["a", "b"], [0.6, 0.8], "m", combination_type, **kwargs)
    compared = 0
    for path, layer in peft_model.base_model.model.named_modules():
        if isinstance(layer, LoraLayer) and "m" in layer.lora_A:
            expected = layer.get_delta_weight("m")
            tolerance = ATOL * max(1.0, expected.abs().max().item())  # integer deltas reach ~5: fp32 SVD error
            assert (am.model.get_submodule(path).get_delta_weight("m") - expected).abs().max().item() <= tolerance, path
            compared += 1
    assert compared == 4
