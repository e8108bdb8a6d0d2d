"""IA3's part of ``add_weighted_adapter``: the linear combination of the sources' vectors.

At each module the new vector is ``Σ wᵢ lᵢ``, as PEFT computes it, where a source that does not
touch the module counts with the identity vector (ones): PEFT leaves it out, which scales the
module by ``Σ_present wᵢ lᵢ`` only. When every source covers the same modules the two agree.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from adapterhub.plugin import AdapterFiles, UnsupportedOperationError, WeightedRequest
from adapterhub.toolkit.peft import OWNED_TENSORS, canonical_key, jsonable_config
from adapterhub.toolkit.peft.combine import modules_to_save_state, new_targets, source_configs, union_modules_to_save
from adapterhub.toolkit.structure import walk_modules


def sites(model: Any, request: WeightedRequest) -> list[tuple[str, Any, dict[str, Any]]]:
    """(canonical module path, layer, {source: vector}) for every module holding a source."""
    from peft.tuners.ia3 import IA3Layer

    found = []
    for path, layer in walk_modules(model):
        if isinstance(layer, IA3Layer):
            held = {n: layer.ia3_l[n].detach() for n in request.adapters if n in layer.ia3_l}
            if held:
                found.append((canonical_key(path + ".")[:-1], layer, held))
    return found


def check(model: Any, request: WeightedRequest, method: str) -> tuple[dict[str, Any], list]:
    configs = source_configs(model, request, method)
    found = sites(model, request)
    for path, _layer, held in found:
        shapes = {n: tuple(v.shape) for n, v in held.items()}
        if len(set(shapes.values())) > 1:
            raise UnsupportedOperationError(
                f"add_weighted_adapter: adapters: the IA3 vectors of module {path!r} have different shapes "
                f"{shapes} (one source treats it as a feed-forward module, another does not)",
                hint="combine IA3 adapters that agree on feedforward_modules")
    return configs, found


def build(model: Any, request: WeightedRequest, method: str, *,
          progress: Callable[[int, int], None] | None = None) -> AdapterFiles:
    configs, found = check(model, request, method)
    state: dict[str, Any] = {}
    for done, (path, _layer, held) in enumerate(found, 1):
        first = next(iter(held.values()))
        vector = first.new_zeros(first.shape)
        for name, weight in zip(request.adapters, request.weights, strict=True):
            vector += held[name] * weight if name in held else weight  # an absent source is the identity
        state[f"{path}.ia3_l"] = vector
        if progress is not None:
            progress(done, len(found))
    saved, saved_modules, _ = modules_to_save_state(walk_modules(model), request)
    state.update(saved)
    paths = [path for path, _, _ in found]
    ff_paths = [path for path, layer, _ in found if layer.is_feedforward]
    targets, feedforward = _targets(list(configs.values()), paths, ff_paths)
    config = jsonable_config(configs[request.adapters[0]].to_dict())
    config.update(target_modules=targets, feedforward_modules=feedforward, init_ia3_weights=True,
                  inference_mode=True, revision=None, modules_to_save=union_modules_to_save(configs, saved_modules))
    if targets == sorted(paths):
        config.update(layers_to_transform=None, layers_pattern=None, exclude_modules=None)
    config.pop("peft_type", None)
    return AdapterFiles(method, config, state, format="peft", source=f"add_weighted_adapter({list(request.adapters)})",
                        extras={OWNED_TENSORS: True})  # made here: the new adapter's parameters as they are


def _targets(configs: list[Any], paths: list[str], ff_paths: list[str]) -> tuple[Any, Any]:
    """``target_modules`` and ``feedforward_modules`` of the new adapter: both PEFT-style unions of
    the sources' names (or regexes), or else both explicit module paths (PEFT needs the second
    inside the first)."""
    targets = new_targets(configs, paths)
    if not ff_paths:
        return targets, []
    values = [c.feedforward_modules or [] for c in configs]
    if isinstance(targets, list) and targets != sorted(paths) and all(
            isinstance(v, (list, set, tuple, frozenset)) for v in values):
        return targets, sorted(set().union(*values))
    if isinstance(targets, str) and all(isinstance(v, str) for v in values):
        return targets, values[0] if len(set(values)) == 1 else "|".join(f"({v})" for v in dict.fromkeys(values))
    return sorted(paths), sorted(ff_paths)
