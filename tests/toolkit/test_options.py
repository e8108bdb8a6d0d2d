"""A misspelled option is an error that names it, suggests the right one and lists the valid ones,
for every method's ``create``; the model is left as it was."""

from __future__ import annotations

import pytest
from support.fixtures import state_hash
from support.trainer_cases import METHOD_CASES, base_model

from adapterhub import AdapterModel
from adapterhub.errors import UsageError
from adapterhub.toolkit.options import check_options

#: case -> (a misspelled option, what the error must suggest, an option the hint must list)
TYPOS = {
    "lora": ({"lora_alpah": 32}, "lora_alpha", "target_modules"),
    "qlora": ({"rank": 4}, "'r'", "lora_dropout"),
    "ia3": ({"feedforward_module": ["output.dense"]}, "feedforward_modules", "target_modules"),
    "prompt_tuning": ({"num_virtual_token": 4}, "num_virtual_tokens", "prompt_tuning_init"),
    "prefix_tuning": ({"prefix_projections": True}, "prefix_projection", "num_virtual_tokens"),
    "p_tuning": ({"encoder_hiden_size": 8}, "encoder_hidden_size", "encoder_reparameterization_type"),
    "pfeiffer": ({"reduction_factr": 8}, "reduction_factor", "non_linearity"),
    "houlsby": ({"mh_adaptor": True}, "mh_adapter", "output_adapter"),
    "compacter": ({"phm_dimension": 2}, "phm_dim", "phm_layer"),
    "bitfit": ({"target_module": ["output.dense"]}, "target_modules", "target_modules"),
}


@pytest.mark.parametrize("case", sorted(TYPOS))
def test_a_misspelled_option_is_an_error_listing_the_valid_ones(case):
    method, options = METHOD_CASES[case]
    typo, suggestion, listed = TYPOS[case]
    am = AdapterModel(base_model(case))
    before = state_hash(am.model)
    with pytest.raises(UsageError) as info:
        am.add_adapter("x", method, **{**options, **typo})
    message = str(info.value)
    assert repr(next(iter(typo))) in message and suggestion in message
    assert "valid options" in message and listed in message
    assert not am.adapters and state_hash(am.model) == before
    am.add_adapter("x", method, **options)  # the same call spelled right works
    assert am.adapters["x"].trainable


def test_check_options_reports_every_problem_and_unsupported_keys():
    with pytest.raises(UsageError) as info:
        check_options("m", {"alpah": 1, "beta": 2, "gamma": 3, "delta": None}, ["alpha", "beta"],
                      aliases={"gamma": "beta"}, unsupported=["delta"])
    message = str(info.value)
    assert "'alpah' (did you mean 'alpha'?)" in message and "'gamma' (did you mean 'beta'?)" in message
    assert "'beta'" not in message.split("hint")[0].replace("did you mean 'beta'", "")
    assert "delta" not in message  # an unsupported key left at None is harmless
    with pytest.raises(UsageError, match="'delta' is not supported"):
        check_options("m", {"delta": ["classifier"]}, ["alpha"], unsupported=["delta"])
    check_options("m", {"alpha": 1}, ["alpha"])


def test_prompt_methods_refuse_options_they_would_ignore():
    am = AdapterModel(base_model("prompt_tuning"))
    with pytest.raises(UsageError, match="'modules_to_save' is not supported"):
        am.add_adapter("p", "prompt_tuning", num_virtual_tokens=2, modules_to_save=["pooler"])
