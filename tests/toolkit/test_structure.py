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
