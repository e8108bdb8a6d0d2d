"""The generic PEFT plugin: registration, fallback, the guarantees every built-in gives (a failed
load leaves the model bit-identical, the config guard, safetensors, pickle refused, exact unmerge),
training, and what ``adapterhub methods`` says. Adapters come from PEFT
(``tests/fixtures/peft-0.21.2-types``, made by PEFT 0.21.2) or are created by PEFT in the test."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from support.fixtures import FIXTURES, logits, state_hash

from adapterhub import AdapterModel, Stack
from adapterhub.errors import (
    AdapterFormatError,
    AdapterHubError,
    CompositionError,
    IncompatibleBaseModelError,
    PickleRefusedError,
    UnsupportedOperationError,
)
from adapterhub.plugin import get_method, hookimpl
from adapterhub.testing import run_cli, state_dict_copy, state_dicts_equal

TYPES = FIXTURES / "peft-0.21.2-types"
ATOL = 1e-5


def _case(peft_type: str, arch: str):
    from safetensors.torch import load_file

    folder = TYPES / peft_type.lower() / arch
    return folder, json.loads((folder / "case.json").read_text()), load_file(str(folder / "outputs.safetensors"))


def _feed():
    from safetensors.torch import load_file

    inputs = load_file(str(TYPES / "inputs.safetensors"))
    return {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}


def _base(meta):
    import transformers

    return getattr(transformers, meta["base_class"]).from_pretrained(str(FIXTURES / meta["base"])).eval()


def _copy(peft_type: str, arch: str, tmp_path, which: str = "a"):
    dest = tmp_path / f"{peft_type.lower()}-{arch}-{which}"
    shutil.copytree(TYPES / peft_type.lower() / arch / which, dest)
    return dest


# -- registration -------------------------------------------------------------------------------


def test_registering_and_detecting_import_neither_torch_nor_peft():
    """The install path records an adapter's method without torch: so must the generic plugin."""
    code = (
        "import sys\n"
        "from adapterhub.plugin.registry import detect_method, registered_methods\n"
        "names = registered_methods()\n"
        f"print(detect_method({str(TYPES / 'loha' / 'llama' / 'a')!r}).name)\n"
        "print(sorted(m for m in ('torch', 'peft', 'transformers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["loha", "[]"]


def test_the_plugin_knows_every_type_of_the_installed_peft():
    from peft.utils.peft_types import PeftType

    from adapterhub.default_plugins.peft_generic.types import PEFT_TYPES

    assert list(PEFT_TYPES) == [t.value for t in PeftType]


def test_one_fallback_method_per_type_no_other_plugin_claims(fresh_plugins):
    from adapterhub.default_plugins.peft_generic.types import PEFT_TYPES
    from adapterhub.plugin.registry import registered_methods

    registered = registered_methods()
    generic = {n: r for n, r in registered.items() if r.plugin == "adapterhub.default_plugins.peft_generic"}
    others = {t for r in registered.values() if r not in generic.values() for t in r.method.peft_types}
    assert others == {"LORA", "IA3", "PROMPT_TUNING", "PREFIX_TUNING", "P_TUNING"}
    assert set(generic) == {t.lower() for t in PEFT_TYPES if t not in others}
    for name, reg in generic.items():
        assert reg.method.fallback and reg.method.priority < 0 and reg.method.peft_types == (name.upper(),)
    assert max(r.method.priority for r in registered.values() if not r.method.fallback) >= 0


def test_a_plugin_for_the_type_wins(fresh_plugins, tmp_path):
    """A third-party method for LoHa (same name) or for OFT (other name) replaces the generic one."""
    from adapterhub.default_plugins.peft_generic.method import GenericPeftMethod
    from adapterhub.plugin.registry import detect_method, registered_methods

    class MyLoha(GenericPeftMethod):
        name = "loha"
        peft_type = "LOHA"
        peft_types = ("LOHA",)
        fallback = False
        priority = 0

    class MyOft(GenericPeftMethod):
        name = "my_oft"
        peft_type = "OFT"
        peft_types = ("OFT",)
        fallback = False
        priority = 0

    class Plugin:
        @hookimpl
        def register_methods(self, register):
            register(MyLoha())
            register(MyOft())

    fresh_plugins.load_plugins()
    fresh_plugins.pm.register(Plugin(), name="my-plugin")
    registered = registered_methods()
    assert registered["loha"].plugin == "my-plugin" and "oft" not in registered
    assert detect_method(TYPES / "oft" / "llama" / "a").name == "my_oft"
    assert detect_method(TYPES / "loha" / "llama" / "a") is registered["loha"].method


# -- transactions and guards -----------------------------------------------------------------------


@pytest.mark.parametrize(("peft_type", "arch"), [("LOHA", "llama"), ("VERA", "bert"), ("OFT", "bert")])
def test_a_failed_load_leaves_the_model_bit_identical(peft_type, arch, tmp_path):
    from safetensors.torch import load_file, save_file

    folder, meta, ref = _case(peft_type, arch)
    base = _base(meta)
    am = AdapterModel(base)
    am.load_adapter(folder / "b", name="b")  # a second adapter of the type is already there (shared state)
    before, structure = state_hash(base), [(n, type(m)) for n, m in base.named_modules()]
    broken = _copy(peft_type, arch, tmp_path)
    tensors = load_file(str(broken / "adapter_model.safetensors"))
    key = sorted(k for k in tensors if k.startswith("base_model.model."))[-1]
    tensors[key] = torch.zeros(*tensors[key].shape, 3)  # one tensor of the wrong shape
    save_file(tensors, str(broken / "adapter_model.safetensors"))
    with pytest.raises(IncompatibleBaseModelError):
        am.load_adapter(broken, name="a")
    assert state_hash(base) == before and [(n, type(m)) for n, m in base.named_modules()] == structure
    assert set(base.peft_config) == {"b"} and set(am.adapters) == {"b"}
    am.load_adapter(folder / "a", name="a")  # and the good one still loads, to PEFT's output
    am.set_adapter("a")
    torch.testing.assert_close(logits(am, _feed()), ref["alone"], atol=ATOL, rtol=0)


def test_config_regexes_that_can_backtrack_are_refused(tmp_path):
    folder, meta, _ = _case("DELORA", "llama")
    base = _base(meta)
    before = state_hash(base)
    for field, value in (("target_modules", "(a+)+$"), ("lambda_pattern", {"(.*.*)*q_proj": 3}),
                         ("rank_pattern", {"(a|ab)*": 2})):
        bad = _copy("DELORA", "llama", tmp_path / field)
        config = json.loads((bad / "adapter_config.json").read_text())
        config[field] = value
        (bad / "adapter_config.json").write_text(json.dumps(config))
        with pytest.raises(AdapterFormatError, match=field):
            AdapterModel(base).load_adapter(bad, name="x")
    assert state_hash(base) == before and not hasattr(base, "peft_config")


def test_a_base_rewriting_init_is_refused_when_loading(tmp_path):
    bad = _copy("ADALORA", "llama", tmp_path)
    config = json.loads((bad / "adapter_config.json").read_text())
    config["init_lora_weights"] = "pissa"
    (bad / "adapter_config.json").write_text(json.dumps(config))
    base = _base(_case("ADALORA", "llama")[1])
    with pytest.raises(AdapterFormatError, match="init_lora_weights"):
        AdapterModel(base).load_adapter(bad, name="x")


@pytest.mark.parametrize(("peft_type", "field"), [("LOHA", "r"), ("VERA", "r"), ("VBLORA", "num_vectors")])
def test_config_sizes_are_bounded_by_the_file_and_the_model(peft_type, field, tmp_path):
    """A config asking PEFT for a huge tensor (ranks, shared projections, vector banks) is refused
    before anything of that size is allocated, and the model is untouched."""
    bad = _copy(peft_type, "llama", tmp_path)
    config = json.loads((bad / "adapter_config.json").read_text())
    config[field] = 10**8
    (bad / "adapter_config.json").write_text(json.dumps(config))
    base = _base(_case(peft_type, "llama")[1])
    before = state_hash(base)
    with pytest.raises(AdapterFormatError, match="elements"):
        AdapterModel(base).load_adapter(bad, name="x")
    assert state_hash(base) == before and not hasattr(base, "peft_config")


def test_pickle_weights_are_refused_unless_allowed(tmp_path):
    from safetensors.torch import load_file

    folder, meta, ref = _case("BOFT", "bert")
    pickled = _copy("BOFT", "bert", tmp_path)
    torch.save(load_file(str(pickled / "adapter_model.safetensors")), pickled / "adapter_model.bin")
    (pickled / "adapter_model.safetensors").unlink()
    am = AdapterModel(_base(meta))
    with pytest.raises(PickleRefusedError):
        am.load_adapter(pickled, name="p")
    am.load_adapter(pickled, name="p", allow_pickle=True)
    am.set_adapter("p")
    torch.testing.assert_close(logits(am, _feed()), ref["alone"], atol=ATOL, rtol=0)


# -- composition and merging -------------------------------------------------------------------------


def test_refused_compositions_say_why_and_change_nothing():
    folder, meta, _ = _case("LN_TUNING", "llama")
    am = AdapterModel(_base(meta))
    am.load_adapter(folder / "a", name="a")
    am.load_adapter(folder / "b", name="b")
    with pytest.raises(CompositionError, match="ln_tuning"):
        am.set_adapter(Stack("a", "b"))
    am.set_adapter("a")
    before = state_dict_copy(am.model)
    with pytest.raises(UnsupportedOperationError, match="weight 1"):
        am.merge_adapter(weights=[0.5])
    assert state_dicts_equal(before, state_dict_copy(am.model))
    am.merge_adapter()
    with pytest.raises(UnsupportedOperationError, match="one adapter at a time"):
        am.merge_adapter(["b"])
    am.unmerge_adapter()
    assert state_dicts_equal(before, state_dict_copy(am.model))


def test_a_merge_peft_refuses_on_this_base_changes_nothing():
    """BEFT merges into the base layer's bias; Llama's projections have none, and PEFT says so."""
    folder, meta, ref = _case("BEFT", "llama")
    assert not meta["outputs"]["merged"]["ok"]
    am = AdapterModel(_base(meta))
    am.load_adapter(folder / "a", name="a")
    am.set_adapter("a")
    before = state_dict_copy(am.model)
    with pytest.raises(UnsupportedOperationError, match="bias"):
        am.merge_adapter()
    assert state_dicts_equal(before, state_dict_copy(am.model)) and am.merged == {}
    torch.testing.assert_close(logits(am, _feed()), ref["alone"], atol=ATOL, rtol=0)


@pytest.mark.fidelity
@pytest.mark.parametrize("peft_type", ["LN_TUNING", "LOHA", "VERA", "TRAINABLE_TOKENS"])
def test_merge_and_unload_is_peft_merged_model(peft_type):
    """LN tuning swaps modules to merge, LoHa/VeRA fold weights, trainable tokens rewrite rows."""
    folder, meta, ref = _case(peft_type, "llama")
    pristine = state_dict_copy(_base(meta))
    am = AdapterModel(_base(meta))
    am.load_adapter(folder / "a", name="a")
    am.set_adapter("a")
    am.merge_adapter()
    am.unmerge_adapter()
    assert state_dicts_equal(pristine, state_dict_copy(am.unload()))
    am = AdapterModel(_base(meta))
    am.load_adapter(folder / "a", name="a")
    am.set_adapter("a")
    plain = am.merge_and_unload()
    assert not hasattr(plain, "peft_config")
    torch.testing.assert_close(logits(plain, _feed()), ref["merged"], atol=ATOL, rtol=0)


# -- training and saving ---------------------------------------------------------------------------


@pytest.mark.fidelity
@pytest.mark.parametrize(("method", "config"), [
    ("loha", {"r": 2, "alpha": 4, "target_modules": ["q_proj", "v_proj"]}),
    ("vera", {"r": 4, "target_modules": ["q_proj", "v_proj"]}),
    ("oft", {"r": 0, "oft_block_size": 4, "target_modules": ["q_proj", "v_proj"]}),
    ("adalora", {"init_r": 4, "target_r": 2, "total_step": 10, "target_modules": ["q_proj", "v_proj"]}),
])
def test_train_save_and_peft_loads_it(method, config, tmp_path):
    from peft import PeftModel

    meta = _case("LOHA", "llama")[1]
    am = AdapterModel(_base(meta))
    files = am.add_adapter("t", method, **config)
    assert files.config["peft_type"] == method.upper()
    am.set_adapter("t")
    params = get_method(method).parameters(am.model, "t")
    assert params and all(p.requires_grad for p in params)
    assert {n for n, p in am.model.named_parameters() if p.requires_grad} == {
        n for n, p in am.model.named_parameters() if any(p is q for q in params)}
    am.train()
    optimizer = torch.optim.SGD(params, lr=0.5)
    for _ in range(2):
        am(**_feed()).logits.pow(2).mean().backward()
        assert all(p.grad is not None for p in params)  # every adapter weight is trained
        optimizer.step()
        optimizer.zero_grad()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # and weights well away from PEFT's initialisation (AdaLoRA's E starts at 0)
        for p in params:
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    am.eval()
    expected = logits(am, _feed())
    with am.disable_adapter():
        assert (logits(am, _feed()) - expected).abs().max() > 1e-4  # training moved it off the identity
    am.save_adapter(tmp_path / "saved", "t")
    assert (tmp_path / "saved" / "adapter_model.safetensors").is_file()
    assert not (tmp_path / "saved" / "adapter_model.bin").exists()
    reloaded = PeftModel.from_pretrained(_base(meta), str(tmp_path / "saved")).eval()
    torch.testing.assert_close(logits(reloaded, _feed()), expected, atol=ATOL, rtol=0)


def test_refused_types_cannot_be_created_either():
    meta = _case("LOHA", "llama")[1]
    base = _base(meta)
    with pytest.raises(UnsupportedOperationError, match="'poly'"):
        AdapterModel(base).add_adapter("p", "poly", r=2, n_tasks=2, target_modules=["q_proj"])
    with pytest.raises(UnsupportedOperationError, match="task_ids"):
        get_method("poly").create(base, "p", {"r": 2, "n_tasks": 2, "target_modules": ["q_proj"]})
    assert not hasattr(base, "peft_config")


# -- what adapterhub methods says ---------------------------------------------------------------------


def test_methods_json_shows_what_peft_supports():
    result = run_cli("methods", "--json")
    assert result.exit_code == 0, result.stderr
    rows = {r["method"]: r for r in json.loads(result.stdout)}
    loha, ln, glora, xlora = rows["loha"], rows["ln_tuning"], rows["glora"], rows["xlora"]
    assert loha["plugin"] == "adapterhub.default_plugins.peft_generic" and loha["peft_types"] == ["LOHA"]
    assert (loha["mergeable"], loha["supports_stack"], loha["supports_mixed_batch"]) == (True, True, False)
    assert (loha["supports_average"], loha["supports_weighted_merge"], loha["refused"]) == (False, False, None)
    assert (ln["mergeable"], ln["supports_stack"]) == (True, False)
    assert glora["supports_mixed_batch"] is True
    assert "classifier" in xlora["refused"] and not xlora["trainable"]
    assert rows["lora"]["refused"] is None and rows["lora"]["supports_weighted_merge"] is True
    text = run_cli("methods")
    assert text.exit_code == 0
    line = next(x for x in text.stdout.splitlines() if x.startswith("loha "))
    assert "[mergeable,stack,trainable]" in line
    assert "refused:" in next(x for x in text.stdout.splitlines() if x.startswith("xlora "))


def test_loading_a_refused_type_names_it_and_the_reason():
    folder, meta, _ = _case("XLORA", "llama")
    base = _base(meta)
    with pytest.raises(UnsupportedOperationError) as info:
        AdapterModel(base).load_adapter(folder / "a", name="x")
    assert "XLORA" in info.value.message and "classifier" in info.value.message
    assert "PeftModel.from_pretrained" in (info.value.hint or "")
    assert not hasattr(base, "peft_config")


def test_adapterhub_errors_are_raised_not_peft_internals():
    """Anything PEFT refuses while injecting reaches the user as an adapterhub error naming the file."""
    import transformers

    folder, _, _ = _case("LOHA", "llama")
    bert = transformers.BertModel.from_pretrained(str(FIXTURES / "base" / "tiny-bert")).eval()
    before = state_hash(bert)
    with pytest.raises(AdapterHubError, match="loha/llama/a"):
        AdapterModel(bert).load_adapter(folder / "a", name="x")
    assert state_hash(bert) == before and not hasattr(bert, "peft_config")


@pytest.mark.fidelity
def test_lora_and_loha_stacked_match_peft_mixed_model():
    """Two methods on one model (the lora plugin's LoRA and the generic plugin's LoHa) against
    PEFT's own PeftMixedModel with both active; merged and unloaded too."""
    from peft import PeftMixedModel

    _, meta, _ = _case("LOHA", "llama")
    mixed = PeftMixedModel.from_pretrained(_base(meta), str(TYPES / "lora" / "llama" / "a"), adapter_name="l")
    mixed.load_adapter(str(TYPES / "loha" / "llama" / "a"), adapter_name="h")
    mixed.set_adapter(["l", "h"])
    expected = logits(mixed.eval(), _feed())
    base = _base(meta)
    pristine = state_dict_copy(base)
    am = AdapterModel(base)
    am.load_adapter(TYPES / "lora" / "llama" / "a", name="l")
    am.load_adapter(TYPES / "loha" / "llama" / "a", name="h")
    am.set_adapter(Stack("l", "h"))
    torch.testing.assert_close(logits(am, _feed()), expected, atol=ATOL, rtol=0)
    am.merge_adapter()
    torch.testing.assert_close(logits(am, _feed()), expected, atol=ATOL, rtol=0)
    am.unmerge_adapter()
    assert state_dicts_equal(pristine, state_dict_copy(am.unload()))


def test_integer_tensor_table_matches_what_peft_saves():
    """Only the index tensors PEFT stores as integers may be integers (the dtype check refuses an
    integer anywhere else); the table is checked against every file PEFT saved for the fixtures."""
    from safetensors import safe_open

    from adapterhub.default_plugins.peft_generic.types import INTEGER_TENSORS

    root = Path(__file__).resolve().parents[2] / "fixtures" / "peft-0.21.2-types"
    found: dict[str, set[str]] = {}
    for weights in root.glob("*/*/*/adapter_model.safetensors"):
        with safe_open(str(weights), "pt") as handle:
            for key in handle.keys():
                if handle.get_slice(key).get_dtype() not in ("F16", "BF16", "F32", "F64"):
                    found.setdefault(weights.parts[-4].upper(), set()).add(key.rsplit(".", 1)[-1])
    assert found == {t: set(names) for t, names in INTEGER_TENSORS.items()}
