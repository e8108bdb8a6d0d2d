"""adapterhub.toolkit.peft.tuners / .support / .coverage: PEFT's registry read from PEFT, why a
type cannot run, and what PEFT supports for one, found by running PEFT's classes."""

from __future__ import annotations

import pytest

from adapterhub.toolkit.peft.support import tuner_support
from adapterhub.toolkit.peft.tuners import known_types, layer_class, refusal, tuner_class


def test_classes_come_from_peft_registry():
    from peft.tuners.loha import LoHaLayer, LoHaModel
    from peft.tuners.lora import LoraLayer

    assert tuner_class("LOHA") is LoHaModel and layer_class("loha") is LoHaLayer
    assert layer_class("ADALORA") is LoraLayer  # AdaLoRA's tuner says its layers are LoRA's
    assert tuner_class("NOT_A_TYPE") is None and layer_class("NOT_A_TYPE") is None
    assert "LOHA" in known_types() and len(known_types()) == len(set(known_types()))


@pytest.mark.parametrize(("peft_type", "words"), [
    ("PROMPT_TUNING", "prompt learning"),
    ("MULTITASK_PROMPT_TUNING", "task_ids"),
    ("ADAPTION_PROMPT", "not a layer tuner"),
    ("XLORA", "no layers of its own"),
    ("POLY", "task_ids"),
    ("NOT_A_TYPE", "not a PEFT"),
])
def test_refusals_name_the_type_and_the_reason(peft_type, words):
    why = refusal(peft_type)
    assert why is not None and why.startswith(peft_type) and words in why


@pytest.mark.parametrize("peft_type", ["LORA", "LOHA", "VERA", "LN_TUNING", "TRAINABLE_TOKENS", "OSF"])
def test_layer_tuners_are_not_refused(peft_type):
    assert refusal(peft_type) is None


def test_support_is_what_peft_does():
    lora = tuner_support("LORA")
    assert (lora.mergeable, lora.stackable, lora.per_row, lora.weighted_merge) == (True, True, True, True)
    loha = tuner_support("LOHA")
    assert (loha.mergeable, loha.stackable, loha.per_row, loha.weighted_merge) == (True, True, False, False)
    assert "adapter_names" in loha.notes["per_row"] and "add_weighted_adapter" in loha.notes["weighted_merge"]
    ln = tuner_support("LN_TUNING")
    assert ln.mergeable and not ln.stackable and "more than one adapter" in ln.notes["stackable"]
    osf = tuner_support("OSF")  # PEFT's OSF layer runs only the first active adapter
    assert not osf.stackable and "alone" in osf.notes["stackable"]
    assert tuner_support("GLORA").per_row and tuner_support("ROAD").per_row
    lily = tuner_support("LILY")
    assert not lily.mergeable and "NotImplementedError" in lily.notes["mergeable"]
    poly = tuner_support("POLY")
    assert not poly.loads and not (poly.mergeable or poly.stackable or poly.per_row)


def test_support_is_cached_per_type_and_hints():
    assert tuner_support("LOHA") is tuner_support("loha")
    assert tuner_support("ADALORA", {"total_step": 1}) is tuner_support("ADALORA", {"total_step": 1})


def test_coverage_lists_every_type_with_its_method(fresh_plugins):
    from adapterhub.toolkit.peft.coverage import coverage, markdown_table

    rows = {r.peft_type: r for r in coverage()}
    assert list(rows) == known_types()
    assert (rows["LORA"].method, rows["LORA"].plugin) == ("lora", "adapterhub.default_plugins.lora")
    assert rows["LORA"].per_row and rows["LORA"].merges and rows["LORA"].loads
    assert rows["PREFIX_TUNING"].method == "prefix_tuning" and not rows["PREFIX_TUNING"].merges
    assert rows["LOHA"].method == "loha" and rows["LOHA"].loads and rows["LOHA"].stacks and not rows["LOHA"].per_row
    assert not rows["XLORA"].loads and "classifier" in rows["XLORA"].reason
    table = markdown_table([rows["LOHA"], rows["XLORA"]]).splitlines()
    assert table[2] == "| `LOHA` | `loha` | yes | yes | yes | no |  |"
    assert table[3].startswith("| `XLORA` | `xlora` | no | no | no | no | XLORA")


def test_probing_leaves_the_random_state_alone():
    import torch

    from adapterhub.toolkit.peft.support import _probe

    _probe.cache_clear()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    tuner_support("LOKR")
    assert torch.equal(torch.rand(3), expected)
