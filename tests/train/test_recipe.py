"""adapterhub.train.recipe: what `adapterhub train` uses when the user says nothing, and which
methods it trains."""

from __future__ import annotations

import pytest

from adapterhub.errors import UsageError
from adapterhub.train.recipe import (
    DEFAULT_LEARNING_RATE,
    METHODS,
    OTHER_LEARNING_RATE,
    Recipe,
    check_method,
    method_options,
)


@pytest.mark.parametrize(("model_type", "targets"), [
    ("bert", ["query", "value"]), ("llama", ["q_proj", "v_proj"]), ("gpt2", ["c_attn"])])
def test_lora_gets_the_usual_targets_of_the_architecture(model_type, targets):
    options = method_options("lora", {}, model_type)
    assert options["target_modules"] == targets and options["r"] == 8 and options["lora_alpha"] == 16
    assert options.get("fan_in_fan_out", False) is (model_type == "gpt2")  # GPT-2's Conv1D weights
    assert method_options("qlora", {}, model_type)["target_modules"] == targets


def test_the_users_options_win():
    options = method_options("lora", {"r": 4, "target_modules": ["key"]}, "bert")
    assert options == {"r": 4, "lora_alpha": 16, "lora_dropout": 0.05, "target_modules": ["key"]}
    assert method_options("bottleneck", {"preset": "double_seq_bn"}, "bert") == {
        "preset": "double_seq_bn", "reduction_factor": 16}
    assert method_options("loha", {"r": 2}, "bert") == {"r": 2}  # no defaults of its own: PEFT's


def test_learning_rates():
    assert set(DEFAULT_LEARNING_RATE) == {*METHODS, "full"}
    assert Recipe("lora").resolved_learning_rate() == DEFAULT_LEARNING_RATE["lora"]
    assert Recipe("lora", learning_rate=0.1).resolved_learning_rate() == 0.1
    assert Recipe("loha").resolved_learning_rate() == OTHER_LEARNING_RATE


def test_which_methods_train():
    for method in [*METHODS, "loha", "oft", "vera"]:
        check_method(method)
    with pytest.raises(UsageError) as info:
        check_method("lorra")
    assert "cannot train method 'lorra'" in str(info.value) and "bottleneck" in info.value.hint
    with pytest.raises(UsageError, match="cannot train method 'shadow'"):
        check_method("shadow")  # a PEFT type adapterhub refuses to run
