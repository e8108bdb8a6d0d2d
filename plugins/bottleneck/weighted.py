"""Bottleneck adapters' part of ``add_weighted_adapter``: weight averaging, as ``adapters``'
``average_adapter`` does with its defaults (``combine_strategy="linear"``, ``normalize_weights=True``).

Every parameter of the new adapter is ``Σ λᵢ θᵢ`` with ``λᵢ = wᵢ / Σ wⱼ``. The sources must have the
same configuration (``dropout`` and the initialisation aside, which do not change the trained
weights' meaning), as ``adapters`` requires. Prediction heads are not averaged: the new adapter
has none.
"""

from __future__ import annotations

from typing import Any

from adapterhub.plugin import AdapterFiles, UnsupportedOperationError, WeightedRequest

#: Config keys that may differ between the sources (``adapters`` leaves them out of its config hash).
IGNORED_KEYS = frozenset({"dropout", "init_weights", "init_weights_seed"})


def normalised_weights(request: WeightedRequest) -> list[float]:
    total = sum(request.weights)
    if total == 0:
        raise UnsupportedOperationError(
            f"add_weighted_adapter: weights={list(request.weights)} sum to 0; bottleneck adapters are averaged "
            "with the weights normalised to sum to 1", hint="give weights with a non-zero sum")
    return [w / total for w in request.weights]


def check(request: WeightedRequest, configs: dict[str, dict[str, Any]]) -> None:
    normalised_weights(request)
    first_name = request.adapters[0]
    first = {k: v for k, v in configs[first_name].items() if k not in IGNORED_KEYS}
    for name in request.adapters[1:]:
        other = {k: v for k, v in configs[name].items() if k not in IGNORED_KEYS}
        if other != first:
            differ = sorted(k for k in set(first) | set(other) if first.get(k) != other.get(k))
            raise UnsupportedOperationError(
                f"add_weighted_adapter: adapters: bottleneck adapters {first_name!r} and {name!r} have different "
                f"configurations ({', '.join(f'{k}: {first.get(k)!r} vs {other.get(k)!r}' for k in differ)}); "
                "only identical ones can be averaged", hint="combine bottleneck adapters of one configuration")


def build(request: WeightedRequest, exported: dict[str, AdapterFiles], method: str) -> AdapterFiles:
    """The average of the ``exported`` sources (their canonical files, in request order)."""
    check(request, {n: f.config for n, f in exported.items()})
    weights = normalised_weights(request)
    first = exported[request.adapters[0]]
    state = {}
    for key, tensor in first.state_dict.items():
        total = tensor * weights[0]
        for name, weight in zip(request.adapters[1:], weights[1:], strict=True):
            total = total + exported[name].state_dict[key] * weight
        state[key] = total.to(tensor.dtype)
    extras = {k: (dict(v) if isinstance(v, dict) else v) for k, v in first.extras.items()}
    return AdapterFiles(method, dict(first.config), state, format="adapters", extras=extras,
                        source=f"add_weighted_adapter({list(request.adapters)})")
