"""The load path's cheap bookkeeping: the fast module walk, the fingerprint guard, training modes."""

from __future__ import annotations

import copy

import pytest
import torch

from adapterhub import AdapterModel
from adapterhub.errors import AdapterHubError
from adapterhub.plugin import AdapterFiles, get_method
from adapterhub.toolkit.structure import all_modules, forget_structure, walk_modules
from adapterhub.testing import tiny_bert


def _odd_model() -> torch.nn.Module:
    shared = torch.nn.Linear(3, 3)
    model = torch.nn.Sequential(shared, torch.nn.ReLU(), torch.nn.Sequential(shared, torch.nn.Linear(3, 2)))
    model.add_module("missing", None)  # a None child, as torch allows
    return model


@pytest.mark.parametrize("build", [_odd_model, tiny_bert])
def test_walk_matches_torch(build):
    model = build()
    assert [(n, id(m)) for n, m in walk_modules(model)] == [(n, id(m)) for n, m in model.named_modules()]
    forget_structure(model)
    assert [id(m) for m in all_modules(model)] == [id(m) for m in model.modules()]


class _Breaking:
    """apply() that changes the model, then fails; ``restore`` decides whether it undoes the change first."""

    name = "lora"

    def __init__(self, restore: bool) -> None:
        self.restore = restore

    def apply(self, model, name, adapter):
        original = model.pooler.dense
        model.pooler.dense = torch.nn.Linear(original.in_features, original.out_features)
        if self.restore:
            model.pooler.dense = original
        raise RuntimeError("boom")


def test_failed_apply_that_restores_reraises_and_one_that_does_not_is_reported():
    from adapterhub.runtime.transaction import run_transactionally

    model = tiny_bert()
    files = AdapterFiles("lora", {}, {})
    changes = []
    with pytest.raises(RuntimeError, match="boom"):
        run_transactionally(model, lambda: _Breaking(restore=True).apply(model, "x", files), "x", lambda: changes.append(1))
    with pytest.raises(AdapterHubError, match="did not restore the model"):
        run_transactionally(model, lambda: _Breaking(restore=False).apply(model, "y", files), "y",
                            lambda: changes.append(1))
    assert changes == [1, 1]  # caches are dropped on failure too


@pytest.mark.parametrize("training", [False, True])
def test_new_adapter_modules_follow_the_model_mode(training):
    am = AdapterModel(tiny_bert().train(training))
    am.add_adapter("a", "lora", r=4, target_modules=["query", "value"])
    am.add_adapter("b", "lora", r=4, target_modules=["query", "key"])
    assert {m.training for m in am.model.modules()} == {training}
    assert any("lora_A" in n for n, _ in am.model.named_modules())
    assert get_method("lora").loaded_names(am.model) == {"a", "b"}
    other = copy.deepcopy(am.model)  # the walk cache is per model object
    assert all_modules(other) is not all_modules(am.model)


def _replace_param(model):
    model.pooler.dense.weight = torch.nn.Parameter(model.pooler.dense.weight.detach().clone())


def _reshape_param(model):
    model.pooler.dense.bias.data = torch.zeros(model.pooler.dense.bias.shape[0] + 1)


def _rename_child(model):
    pooler = model.pooler
    del model.pooler
    model.add_module("renamed_pooler", pooler)


def _drop_config(model):
    model.peft_config.pop("x")


@pytest.mark.parametrize("change", [_replace_param, _reshape_param, _rename_child, _drop_config])
def test_a_failed_apply_that_leaves_any_change_is_reported(change):
    """Each kind of change a failed apply could leave behind: a parameter replaced by an equal one, a
    parameter given data of another shape, a module moved to another name, a PEFT adapter dropped."""
    from adapterhub.runtime.transaction import run_transactionally

    model = tiny_bert()
    model.peft_config = {"x": object()}
    all_modules(model)  # a cached walk, as after a load: the check after a failure walks afresh

    def failing():
        change(model)
        raise RuntimeError("boom")

    with pytest.raises(AdapterHubError, match="did not restore the model"):
        run_transactionally(model, failing, "x", lambda: None)


def _check_cache_exact(model):
    """The cached walk, per-class lists and fingerprint equal what a fresh walk gives (as sets: an
    edit appends where a walk would insert)."""
    from adapterhub.toolkit import structure

    entry = structure._STRUCTURE_CACHE.get(model)
    fresh = structure._walk_unnamed(model)
    if entry is None:
        return
    assert {id(m) for m in entry["all"]} == {id(m) for m in fresh} and len(entry["all"]) == len(fresh)
    for key, found in entry.items():
        if isinstance(key, type):
            assert {id(m) for m in found} == {id(m) for m in fresh if isinstance(m, key)}
    if "fingerprint" in entry:
        forget_structure(model)
        assert entry["fingerprint"].same_as(structure.fingerprint(model))
        structure._STRUCTURE_CACHE[model] = entry


def test_loads_and_deletes_keep_the_cached_walk_and_fingerprint_exact(tmp_path):
    """A load that only adds an adapter's modules to layers already there updates the cache in place
    (it is kept); one that wraps new modules, and deletes, leave it exact or drop it."""
    from peft import IA3Config, LoraConfig

    from adapterhub.testing import save_peft_adapter, tiny_gpt2, tiny_inputs
    from adapterhub.toolkit import structure

    base = tiny_gpt2()
    folders = {
        "a": save_peft_adapter(base, LoraConfig(r=2, target_modules=["c_attn", "c_proj"], fan_in_fan_out=True), tmp_path / "a"),
        "b": save_peft_adapter(base, LoraConfig(r=3, target_modules=["c_attn"], fan_in_fan_out=True, use_dora=True),
                               tmp_path / "b", seed=1),
        "c": save_peft_adapter(base, LoraConfig(r=2, target_modules=["c_fc"], fan_in_fan_out=True), tmp_path / "c", seed=2),
        "m": save_peft_adapter(base, LoraConfig(r=2, target_modules=["c_attn"], fan_in_fan_out=True,
                                                modules_to_save=["ln_f"]), tmp_path / "m", seed=3),
        "i": save_peft_adapter(base, IA3Config(target_modules=["c_attn"], feedforward_modules=[], fan_in_fan_out=True),
                               tmp_path / "i", seed=4),
    }
    am = AdapterModel(tiny_gpt2())
    kept = []
    steps = [("load", "a", "a1"), ("load", "a", "a2"), ("load", "b", "b1"), ("load", "c", "c1"), ("load", "i", "i1"),
             ("load", "a", "a3"), ("delete", "a2"), ("load", "m", "m1"), ("delete", "c1"), ("add", "t"),
             ("delete", "m1"), ("delete", "i1"), ("load", "b", "b2"), ("delete", "a1"), ("delete", "t")]
    for step in steps:
        all_modules(am.model)
        fingerprint_before = structure.fingerprint(am.model)
        entry = structure._STRUCTURE_CACHE.get(am.model)
        if step[0] == "load":
            am.load_adapter(folders[step[1]], name=step[2])
        elif step[0] == "add":
            am.add_adapter(step[1], "lora", r=2, target_modules=["c_attn"], fan_in_fan_out=True)
        else:
            am.delete_adapter(step[1])
        if structure._STRUCTURE_CACHE.get(am.model) is entry:
            kept.append(step)
            assert not fingerprint_before.same_as(structure.fingerprint(am.model))
        _check_cache_exact(am.model)
        assert {m.training for m in am.model.modules()} == {False}
    # adding a LoRA to layers that hold LoRAs, and deleting one that leaves its layers in use, keep it
    assert ("load", "a", "a2") in kept and ("load", "b", "b1") in kept and ("delete", "a2") in kept
    # PEFT replaced modules: c_fc was not wrapped yet; c_attn's LoRA layers were inside IA3's
    assert ("load", "c", "c1") not in kept and ("load", "a", "a3") not in kept
    # and what is left runs as a model loaded afresh with the same adapters
    fresh = AdapterModel(tiny_gpt2())
    fresh.load_adapter(folders["b"], name="b1")
    fresh.load_adapter(folders["a"], name="a3")
    fresh.load_adapter(folders["b"], name="b2")
    inputs = tiny_inputs()
    with torch.no_grad():
        for name in ["b1", "a3", "b2"]:
            am.set_adapter(name)
            fresh.set_adapter(name)
            torch.testing.assert_close(am(**inputs).logits, fresh(**inputs).logits, atol=1e-6, rtol=0)


def test_a_change_that_reports_nothing_drops_the_cache():
    from adapterhub.toolkit.structure import settle_structure, structure_mark

    model = tiny_bert()
    before = all_modules(model)
    mark = structure_mark()
    model.pooler.extra = torch.nn.Linear(2, 2)  # a change made without a structure_edit
    settle_structure(model, mark)
    assert model.pooler.extra in all_modules(model) and model.pooler.extra not in before


def test_deleting_an_adapter_with_a_head_leaves_no_stale_module_cached():
    """The delete itself is reported (its LoRA modules go), but the head module that goes with it is
    not part of that report: the cache must not keep it."""
    am = AdapterModel(tiny_bert())
    for name in ("a", "b"):
        am.add_adapter(name, "lora", r=2, target_modules=["query", "value"])
    am.add_head("a", num_labels=2)
    head = next(m for n, m in am.model.named_modules() if n.endswith(".a") and "lora" not in n)
    all_modules(am.model)
    am.delete_adapter("a")
    assert head not in all_modules(am.model)
    _check_cache_exact(am.model)
