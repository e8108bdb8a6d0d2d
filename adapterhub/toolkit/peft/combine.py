"""What every PEFT tuner method needs to combine adapters (``add_weighted_adapter``): the checks of
the sources' configs, the new adapter's ``target_modules``, and its ``modules_to_save`` copies.

The per-method maths (LoRA's factors, IA3's vectors) lives in each method; the numeric tools are
:mod:`adapterhub.toolkit.weighted`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ...errors import UnsupportedOperationError, UsageError
from ...plugin.weighted import WeightedRequest
from ..weighted import combine

#: PEFT config fields whose layers compute something other than the plain method (or whose files
#: hold more than adapter weights): adapters that set any of them cannot be combined.
UNSUPPORTED_FIELDS = (
    "target_parameters", "trainable_token_indices", "layer_replication", "alora_invocation_tokens",
    "use_qalora", "use_bdlora", "arrow_config", "kasa_config", "velora_config", "monteclora_config",
    "megatron_config",
)


def source_configs(model: Any, request: WeightedRequest, method: str) -> dict[str, Any]:
    """PEFT's config object of each source, in request order; refuses the variants that cannot be combined."""
    configs = getattr(model, "peft_config", None) or {}
    out = {}
    for name in request.adapters:
        config = configs.get(name)
        if config is None:
            raise UsageError(f"add_weighted_adapter: adapters: {method} adapter {name!r} has no config on this model")
        for field in UNSUPPORTED_FIELDS:
            if getattr(config, field, None):
                raise UnsupportedOperationError(
                    f"add_weighted_adapter: adapters: {method} adapter {name!r} sets {field}="
                    f"{getattr(config, field)!r}, which add_weighted_adapter cannot combine",
                    hint="combine adapters that use plain target_modules without this option",
                )
        out[name] = config
    return out


def new_targets(configs: Sequence[Any], paths: Sequence[str], attribute: str = "target_modules") -> Any:
    """The new adapter's ``target_modules`` (or ``feedforward_modules``): as PEFT builds it, the union
    of the sources' names (or the alternation of their regexes), when that selects exactly the
    modules the sources cover; otherwise the explicit list of module ``paths``."""
    values = [getattr(c, attribute, None) for c in configs]
    restricted = any(getattr(c, "layers_to_transform", None) is not None or getattr(c, "layers_pattern", None)
                     or getattr(c, "exclude_modules", None) for c in configs)
    if not restricted and values and all(isinstance(v, (list, set, tuple, frozenset)) for v in values):
        return sorted(set().union(*values))
    if not restricted and values and all(isinstance(v, str) for v in values):
        return values[0] if len(set(values)) == 1 else "|".join(f"({v})" for v in dict.fromkeys(values))
    return sorted(paths)


#: ``AdapterFiles.extras`` key: ``[(modules_to_save wrapper, {parameter: tensor})]`` of a combination.
SAVED_PLACEMENTS = "saved_placements"


def modules_to_save_state(modules: list[tuple[str, Any]], request: WeightedRequest
                          ) -> tuple[dict[str, Any], list[str], list]:
    """The new adapter's copies of the modules its sources replace (``modules_to_save``), from
    ``modules`` (the model's :func:`~adapterhub.toolkit.structure.walk_modules`).

    Each source's copy counts as a task vector against the original module, ``θᵢ - θ₀``; the copy
    of the new adapter is ``θ₀`` plus those vectors combined by the request's rule and weights
    (for linear types ``θ₀ + Σ wᵢ (θᵢ - θ₀)``). Returns (canonical key -> tensor, the module names,
    ``[(wrapper, {parameter: tensor})]`` for :data:`SAVED_PLACEMENTS`).
    """
    from peft.utils.other import ModulesToSaveWrapper

    state: dict[str, Any] = {}
    names: list[str] = []
    placements: list[tuple[Any, dict[str, Any]]] = []
    for path, wrapper in modules:
        if not isinstance(wrapper, ModulesToSaveWrapper):
            continue
        present = [(n, w) for n, w in zip(request.adapters, request.weights, strict=True)
                   if n in wrapper.modules_to_save]
        if not present:
            continue
        path = path.replace(".base_layer.", ".")
        names.append(path.rsplit(".", 1)[-1])
        copies = {n: wrapper.modules_to_save[n].state_dict() for n, _ in present}
        tensors = {}
        for param, original in wrapper.original_module.state_dict().items():
            if not original.is_floating_point():
                tensors[param] = original.clone()
                continue
            vectors = [copies[n][param].to(original.dtype) - original for n, _ in present]
            mixed = combine(request.rule, vectors, [w for _, w in present], density=request.density,
                            majority_sign_method=request.majority_sign_method)
            tensors[param] = (original + mixed).to(original.dtype)
        state.update({f"{path}.{param}": t for param, t in tensors.items()})
        placements.append((wrapper, tensors))
    return state, sorted(set(names)), placements


def union_modules_to_save(configs: Mapping[str, Any], extra: Sequence[str]) -> list[str] | None:
    found: set[str] = set(extra)
    for config in configs.values():
        found.update(getattr(config, "modules_to_save", None) or [])
    return sorted(found) or None
