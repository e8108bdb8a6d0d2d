"""The add_weighted_adapter request: every argument checked before any work, errors naming it."""

from __future__ import annotations

import pytest

from adapterhub.errors import UsageError
from adapterhub.plugin.weighted import COMBINATION_TYPES, build_request


def test_the_eleven_peft_types():
    assert set(COMBINATION_TYPES) == {
        "svd", "linear", "cat", "ties", "ties_svd", "dare_ties", "dare_linear", "dare_ties_svd",
        "dare_linear_svd", "magnitude_prune", "magnitude_prune_svd"}


@pytest.mark.parametrize(("kwargs", "names"), [
    ({"adapters": []}, "adapters"),
    ({"adapters": "a"}, "adapters"),
    ({"adapters": ["a", 3]}, "adapters"),
    ({"weights": [1.0]}, "weights"),
    ({"weights": "0.5,0.5"}, "weights"),
    ({"weights": [1.0, float("nan")]}, "weights[1]"),
    ({"weights": [1.0, True]}, "weights[1]"),
    ({"combination_type": "average"}, "combination_type"),
    ({"combination_type": "ties"}, "density"),
    ({"combination_type": "dare_linear_svd"}, "density"),
    ({"combination_type": "ties", "density": 1.5}, "density"),
    ({"combination_type": "svd", "density": 0.5}, "density"),
    ({"combination_type": "ties", "density": 0.5, "majority_sign_method": "mean"}, "majority_sign_method"),
    ({"combination_type": "svd", "svd_rank": 0}, "svd_rank"),
    ({"combination_type": "svd", "svd_rank": 2.5}, "svd_rank"),
    ({"combination_type": "svd", "svd_clamp": 1.5}, "svd_clamp"),
    ({"combination_type": "cat", "svd_rank": 4}, "svd_rank"),
    ({"combination_type": "linear", "svd_clamp": 0.9}, "svd_clamp"),
    ({"combination_type": "svd", "seed": 1}, "seed"),
    ({"combination_type": "svd", "svd_driver": "lapack"}, "svd_driver"),
    ({"combination_type": "cat", "svd_driver": "gesvd"}, "svd_driver"),
    ({"combination_type": "dare_ties", "density": 0.5, "seed": "x"}, "seed"),
])
def test_bad_arguments_name_the_argument(kwargs, names):
    call = {"adapters": ["a", "b"], "weights": [0.5, 0.5], "adapter_name": "m"} | kwargs
    with pytest.raises(UsageError) as info:
        build_request(call.pop("adapters"), call.pop("weights"), call.pop("adapter_name"), **call)
    assert names in str(info.value)


def test_one_adapter_is_always_linear_as_in_peft():
    request = build_request(["a"], [0.5], "m", "ties", density=0.3)
    assert request.combination_type == "linear" and request.density is None


def test_rules_and_description():
    request = build_request(["a", "b"], [2, -1], "m", "dare_ties_svd", density=0.5, svd_rank=4, seed=3)
    assert request.rule == "dare_ties" and request.uses_svd and not request.in_factor_space
    assert request.weights == (2.0, -1.0)
    assert request.describe() == {"combination_type": "dare_ties_svd", "weights": [2.0, -1.0], "svd_rank": 4,
                                  "svd_clamp": None, "density": 0.5, "majority_sign_method": "total", "seed": 3}
    assert build_request(["a", "b"], [1, 1], "m", "cat").rule == "linear"
    assert build_request(["a", "b"], [1, 1], "m", "ties", density=0.2).in_factor_space
