"""LoRA's part of ``add_weighted_adapter``: read each source's factors from its PEFT layers, combine
them module by module, and describe the result as a LoRA adapter (config and canonical tensors).

Each source i at a module contributes ``ΔWᵢ = sᵢ Bᵢ Aᵢ`` with its own scale ``sᵢ`` (``α/r``, or
``α/√r`` for rsLoRA; per-module ranks and alphas as the layer holds them). The new adapter has
``r = lora_alpha`` (scale 1, never rsLoRA), so its delta is exactly the combined factors' product:

* ``linear``, ``cat``: ``B = [B₁ … Bₙ]``, ``A = [w₁s₁A₁; …; wₙsₙAₙ]``, so ``BA = Σ wᵢ ΔWᵢ`` exactly
  (rank ``Σ rᵢ``). PEFT's ``linear`` instead sums the A's and the B's (rank r, with cross terms
  ``Bᵢ Aⱼ``); PEFT's ``cat`` is this.
* ``svd``: the best rank-``svd_rank`` approximation of ``Σ wᵢ ΔWᵢ``, through the factors
  (:func:`adapterhub.toolkit.weighted.sum_svd`).
* ``ties``, ``dare_linear``, ``dare_ties``, ``magnitude_prune``: PEFT's rule on the A's (weights
  ``sign(wᵢsᵢ)·√|wᵢsᵢ|``) and on the B's (``√|wᵢsᵢ|``) separately, as PEFT does.
* ``*_svd``: PEFT's rule on the dense ``ΔWᵢ`` with weights ``wᵢ``, then a truncated SVD.

Beyond the factors: ``lora_B`` biases (``lora_bias``) combine as ``sᵢbᵢ`` with weights ``wᵢ``; DoRA
magnitudes as task vectors ``mᵢ - ‖W‖`` (so one source with weight 1 gives that source back);
``modules_to_save`` copies as task vectors against the original module. Each uses the type's
element-wise rule.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from adapterhub.plugin import AdapterFiles, UnsupportedOperationError, WeightedRequest
from adapterhub.toolkit.peft import OWNED_TENSORS, canonical_key, jsonable_config
from adapterhub.toolkit.peft.combine import (
    SAVED_PLACEMENTS,
    modules_to_save_state,
    new_targets,
    source_configs,
    union_modules_to_save,
)
from adapterhub.toolkit.structure import walk_modules
from adapterhub.toolkit.weighted import combine, dense_svd, pad_rank, seeded, sum_svd

#: ``AdapterFiles.extras`` key of a combination's result: ``[(LoRA layer, {attribute: tensor})]``, where
#: :func:`place` puts each tensor (the state dict holds the same tensors under canonical keys).
PLACEMENTS = "lora_placements"

#: Config fields of the first source that must not carry over to the new adapter (initialisers that
#: would run at injection, and what the combination replaces).
_RESET = {"init_lora_weights": True, "loftq_config": {}, "eva_config": None, "corda_config": None,
          "lora_ga_config": None, "use_rslora": False, "rank_pattern": {}, "alpha_pattern": {},
          "inference_mode": True, "revision": None}


@dataclass
class Piece:
    """One source's LoRA at one module, factors flattened to ``B: out × r``, ``A: r × in``."""

    name: str
    weight: float
    scale: float
    a: Any
    b: Any
    bias: Any = None
    magnitude: Any = None


@dataclass
class Site:
    """One module that at least one source adapts."""

    path: str  # canonical module path (other tuners' wrappers taken out)
    layer: Any
    embedding: bool
    a_shape: tuple[int, ...]  # A's shape after the rank (in, or in × kernel...)
    b_shape: tuple[int, ...]  # B's shape after (out, rank): () or the 1×1 kernel
    pieces: list[Piece] = field(default_factory=list)


def _scale(layer: Any, name: str) -> float:
    """The source's own scale, as PEFT sets it at creation (an Average may have changed ``scaling``)."""
    alpha, r = layer.lora_alpha[name], layer.r[name]
    return alpha / math.sqrt(r) if layer.use_rslora.get(name, False) else alpha / r


def sites(modules: list[tuple[str, Any]], request: WeightedRequest) -> list[Site]:
    """Every module (of ``walk_modules(model)``) holding at least one source, in module order (PEFT's)."""
    from peft.tuners.lora import LoraLayer

    found = []
    for path, layer in modules:
        if not isinstance(layer, LoraLayer):
            continue
        site = None
        for name, weight in zip(request.adapters, request.weights, strict=True):
            if name in layer.lora_A:
                a, b = layer.lora_A[name].weight, layer.lora_B[name].weight
                bias = layer.lora_B[name].bias
                embedding = False
            elif name in getattr(layer, "lora_embedding_A", {}):
                a, b, bias, embedding = layer.lora_embedding_A[name], layer.lora_embedding_B[name], None, True
            else:
                continue
            if site is None:
                site = Site(canonical_key(path + ".")[:-1], layer, embedding, tuple(a.shape[1:]), tuple(b.shape[2:]))
            magnitude = None
            if layer.use_dora.get(name, False):
                magnitude = layer.lora_magnitude_vector[name].weight
            r = a.shape[0]
            site.pieces.append(Piece(name, float(weight), _scale(layer, name), a.detach().reshape(r, -1),
                                     b.detach().reshape(b.shape[0], r), None if bias is None else bias.detach(),
                                     None if magnitude is None else magnitude.detach()))
        if site is not None:
            found.append(site)
    return found


def new_rank(request: WeightedRequest, configs: dict[str, Any]) -> int:
    """The new adapter's rank, as PEFT computes it (each source counts with its largest rank)."""
    ranks = [max([int(c.r), *[int(v) for v in (c.rank_pattern or {}).values()]]) for c in configs.values()]
    if request.combination_type in ("linear", "cat"):
        return sum(ranks)
    if request.uses_svd:
        return request.svd_rank or max(ranks)
    return max(ranks)


#: model -> (request, adapters on the model, check's result): what ``check_weighted`` found, for the
#: ``weighted_adapter`` call that follows it (one walk of the model serves both)
_CHECKED: weakref.WeakKeyDictionary[Any, tuple[WeightedRequest, tuple[str, ...], tuple]] = weakref.WeakKeyDictionary()


def check(model: Any, request: WeightedRequest, method: str) -> tuple[dict[str, Any], list[Site], list]:
    """Every problem with the sources, before any work; returns their configs, their sites and the
    module walk they came from."""
    token = tuple(getattr(model, "peft_config", None) or ())
    memo = _CHECKED.get(model)
    if memo is not None and memo[0] == request and memo[1] == token:
        return memo[2]
    configs = source_configs(model, request, method)
    for name, config in configs.items():
        if getattr(config, "bias", "none") != "none":
            raise UnsupportedOperationError(
                f"add_weighted_adapter: adapters: {method} adapter {name!r} trains the base model's biases "
                f"(bias={config.bias!r}), which cannot be combined", hint="combine adapters with bias='none'")
    dora = {n: bool(getattr(c, "use_dora", False)) for n, c in configs.items()}
    if len(set(dora.values())) > 1:
        raise UnsupportedOperationError(
            f"add_weighted_adapter: adapters: DoRA and plain LoRA cannot be combined "
            f"(DoRA: {[n for n, d in dora.items() if d]}; plain: {[n for n, d in dora.items() if not d]})",
            hint="combine DoRA adapters with DoRA adapters only")
    modules = walk_modules(model)
    found = sites(modules, request)
    if not found and not any(getattr(c, "modules_to_save", None) for c in configs.values()):
        raise UnsupportedOperationError(f"add_weighted_adapter: adapters {list(request.adapters)} hold no LoRA layers")
    for site in found:
        if any(p.magnitude is not None for p in site.pieces):
            weight = site.layer.get_base_layer().weight
            if site.embedding or weight.dim() != 2 or type(weight).__name__ == "Params4bit":
                raise UnsupportedOperationError(
                    f"add_weighted_adapter: DoRA adapters on module {site.path!r} "
                    f"({type(site.layer.get_base_layer()).__name__}) cannot be combined",
                    hint="DoRA adapters combine on Linear and Conv1D layers of an unquantised base")
        if request.in_factor_space:
            ranks = {p.name: p.a.shape[0] for p in site.pieces}
            if len(set(ranks.values())) > 1:
                raise UnsupportedOperationError(
                    f"add_weighted_adapter: adapters: combination_type={request.combination_type!r} works on the "
                    f"LoRA factors and needs equal ranks, but module {site.path!r} has ranks {ranks}",
                    hint="use 'svd', 'cat', 'linear' or a '*_svd' type for adapters of different ranks")
    _CHECKED[model] = (request, token, (configs, found, modules))
    return configs, found, modules


def _base_norm(layer: Any) -> Any:
    """Row norms of the base weight in LoRA's orientation: DoRA's magnitude of an unchanged layer."""
    import torch

    weight = layer.get_base_layer().weight.detach()
    if getattr(layer, "fan_in_fan_out", False):
        weight = weight.T
    return torch.linalg.norm(weight, dim=1).to(weight.dtype)


def _factors(site: Site, request: WeightedRequest, rank: int) -> tuple[Any, Any]:
    import torch

    pieces = site.pieces
    if request.combination_type in ("linear", "cat"):
        b = torch.cat([p.b for p in pieces], dim=1)
        a = torch.cat([p.a * p.weight * p.scale for p in pieces], dim=0)  # PEFT's cat, op for op
        return pad_rank(b, a, rank)
    if request.combination_type == "svd":
        return sum_svd([p.b for p in pieces], [p.a for p in pieces], [p.weight * p.scale for p in pieces], rank,
                       clamp=request.svd_clamp)
    if request.uses_svd:
        compute = torch.float32 if pieces[0].a.dtype in (torch.float16, torch.bfloat16) else pieces[0].a.dtype
        deltas = [(p.b.to(compute) @ p.a.to(compute)) * p.scale for p in pieces]
        # the rule sees each delta in the base weight's layout, as in PEFT (Conv1D and embeddings store
        # it transposed): magnitude pruning breaks ties between equal values by their position
        transposed = site.embedding or bool(getattr(site.layer, "fan_in_fan_out", False))
        mixed = combine(request.rule, [d.T for d in deltas] if transposed else deltas, [p.weight for p in pieces],
                        density=request.density, majority_sign_method=request.majority_sign_method)
        return dense_svd(mixed.T if transposed else mixed, rank, clamp=request.svd_clamp, driver=request.svd_driver,
                         dtype=pieces[0].a.dtype)
    weights_a, weights_b = [], []
    for p in pieces:  # PEFT's factor-space weights: the sign goes on A only
        ws = p.weight * p.scale
        weights_a.append(math.sqrt(abs(ws)) * (1 if ws >= 0 else -1))
        weights_b.append(math.sqrt(abs(ws)))
    options = {"density": request.density, "majority_sign_method": request.majority_sign_method}
    a = combine(request.rule, [p.a for p in pieces], weights_a, **options).to(pieces[0].a.dtype)
    b = combine(request.rule, [p.b for p in pieces], weights_b, **options).to(pieces[0].a.dtype)
    return pad_rank(b, a, rank)


def _extras(site: Site, request: WeightedRequest) -> dict[str, Any]:
    """Bias and DoRA magnitude of the new adapter at ``site`` (canonical key suffix -> tensor)."""
    out = {}
    options = {"density": request.density, "majority_sign_method": request.majority_sign_method}
    with_bias = [p for p in site.pieces if p.bias is not None]
    if with_bias:
        out[".lora_B.bias"] = combine(request.rule, [p.bias * p.scale for p in with_bias],
                                      [p.weight for p in with_bias], **options).to(with_bias[0].bias.dtype)
    dora = [p for p in site.pieces if p.magnitude is not None]
    if dora:
        base = _base_norm(site.layer).to(dora[0].magnitude.dtype)
        mixed = combine(request.rule, [p.magnitude - base for p in dora], [p.weight for p in dora], **options)
        out[".lora_magnitude_vector"] = (base + mixed).to(dora[0].magnitude.dtype)
    return out


def _all_factors(found: list[Site], request: WeightedRequest, rank: int) -> Iterator[tuple[Any, Any]]:
    """Each site's new factors, in order. The rules are PEFT's own functions, one call per module; for
    the deterministic types the modules are shared out among torch's threads (each call is
    independent, its result the same whichever thread runs it). The random types draw from one
    generator in module order (what makes a seed reproducible), so they run one by one."""
    import torch

    workers = min(torch.get_num_threads(), len(found))
    if request.is_random or workers < 2 or request.combination_type in ("linear", "cat"):
        for site in found:
            yield _factors(site, request, rank)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="adapterhub-merge") as pool:
        futures = [pool.submit(_factors, site, request, rank) for site in found]
        try:
            for future in futures:
                yield future.result()
        finally:  # an error or Ctrl-C: modules not started yet are not started
            for future in futures:
                future.cancel()


def build(model: Any, request: WeightedRequest, method: str, *,
          progress: Callable[[int, int], None] | None = None) -> AdapterFiles:
    """The new LoRA adapter (config and canonical tensors) for a checked ``request``."""
    configs, found, modules = check(model, request, method)
    _CHECKED.pop(model, None)
    rank = new_rank(request, configs)
    state: dict[str, Any] = {}
    placements: list[tuple[Any, dict[str, Any]]] = []
    device = found[0].pieces[0].a.device if found else None
    with seeded(request.seed, device):
        for done, (site, (b, a)) in enumerate(zip(found, _all_factors(found, request, rank)), 1):
            a = a.reshape(rank, *site.a_shape).contiguous()
            b = b.reshape(b.shape[0], rank, *site.b_shape).contiguous()
            if site.embedding:
                state[f"{site.path}.lora_embedding_A"], state[f"{site.path}.lora_embedding_B"] = a, b
                tensors = {"lora_embedding_A": a, "lora_embedding_B": b}
            else:
                state[f"{site.path}.lora_A.weight"], state[f"{site.path}.lora_B.weight"] = a, b
                tensors = {"lora_A.weight": a, "lora_B.weight": b}
            for suffix, tensor in _extras(site, request).items():
                state[site.path + suffix] = tensor
                tensors["lora_B.bias" if suffix == ".lora_B.bias" else "lora_magnitude_vector.weight"] = tensor
            placements.append((site.layer, tensors))
            if progress is not None:
                progress(done, len(found))
        saved, saved_modules, saved_placements = modules_to_save_state(modules, request)
    state.update(saved)
    first = configs[request.adapters[0]]
    config = jsonable_config(first.to_dict())
    config.update(_RESET)
    config.update(
        r=rank, lora_alpha=rank, target_modules=new_targets(list(configs.values()), [s.path for s in found]),
        use_dora=any(p.magnitude is not None for s in found for p in s.pieces),
        lora_bias=any(p.bias is not None for s in found for p in s.pieces),
        modules_to_save=union_modules_to_save(configs, saved_modules),
    )
    if isinstance(config["target_modules"], list) and config["target_modules"] == sorted(s.path for s in found):
        config.update(layers_to_transform=None, layers_pattern=None, exclude_modules=None)
    config.pop("peft_type", None)
    # made here: the tensors become the new adapter's parameters as they are (see place)
    extras = {OWNED_TENSORS: True, PLACEMENTS: placements, SAVED_PLACEMENTS: saved_placements}
    return AdapterFiles(method, config, state, format="peft", source=f"add_weighted_adapter({list(request.adapters)})",
                        extras=extras)


def place(method: Any, model: Any, name: str, adapter: AdapterFiles) -> None:
    """Apply a combination's result: PEFT injects the new adapter's layers empty (on the meta device)
    and each tensor goes straight into the layer it was computed for, as PEFT's own
    ``add_weighted_adapter`` fills its new adapter, instead of a round trip through a state dict
    of the whole model. Every layer PEFT made must have been filled, or nothing is kept. The method's
    ``inject_with`` hides the adapters already loaded from PEFT's walks and undoes a failure."""
    import warnings

    import torch
    from peft import inject_adapter_in_model

    from adapterhub.plugin import IncompatibleBaseModelError

    def param(tensor: Any) -> Any:
        return torch.nn.Parameter(tensor, requires_grad=False)

    peft_config = method.peft_config(adapter.config)

    def work() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            inject_adapter_in_model(peft_config, model, adapter_name=name, low_cpu_mem_usage=True)
        placed = set()
        for layer, tensors in adapter.extras[PLACEMENTS]:
            for attribute, tensor in tensors.items():
                if attribute in ("lora_embedding_A", "lora_embedding_B"):
                    getattr(layer, attribute)[name] = param(tensor)
                else:
                    holder, _, leaf = attribute.rpartition(".")
                    setattr(getattr(layer, holder)[name], leaf, param(tensor))
            layer._move_adapter_to_device_of_base_layer(name)
            placed.add(id(layer))
        for wrapper, tensors in adapter.extras[SAVED_PLACEMENTS]:
            wrapper.modules_to_save[name].load_state_dict(tensors, strict=True, assign=True)
        for layer in method.layers(model, name):
            empty = [n for n, p in layer.named_parameters() if f".{name}." in f".{n}." and p.is_meta]
            if id(layer) not in placed or empty:
                raise IncompatibleBaseModelError(
                    f"add_weighted_adapter: the new adapter's config selects a module no source adapts "
                    f"({type(layer.get_base_layer()).__name__})", hint="report this: the combination is inconsistent")

    method.inject_with(model, name, work)
