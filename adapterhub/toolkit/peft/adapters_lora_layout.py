"""Where ``adapters`` 1.3.0 puts LoRA and IA3, and the plan that turns a PEFT LoRA/IA3 into the
library's tensors and inner config, or refuses it.

The library wraps a fixed set of modules per model type (its ``*AdaptersMixin`` classes): the
attention projections it names ``q``/``k``/``v`` (GPT-2: the fused ``c_attn``), one module it calls
``intermediate`` and one it calls ``output`` (on Llama, ``down_proj`` and ``up_proj``, in that
order). One inner config applies to every layer not in ``leave_out``, with one rank ``r`` and one
``alpha`` (scaling ``alpha / r``). A PEFT LoRA is exact there when it targets the same module set
in every layer it touches, with one scaling; rsLoRA and rank/alpha patterns are exact when they
amount to that (``alpha`` is written as ``scaling * r``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from ...errors import UnsupportedOperationError
from ...plugin.records import AdapterFiles
from ..adapters_format.layout import BASE_PREFIXES, refusal

#: Every LoRAConfig field of adapters 1.3.0 with its class default (the key set written).
LORA_DEFAULTS: dict[str, Any] = {
    "architecture": "lora", "selfattn_lora": True, "intermediate_lora": False, "output_lora": False,
    "leave_out": [], "r": 8, "alpha": 8, "dropout": 0.0, "attn_matrices": ["q", "v"],
    "composition_mode": "add", "init_weights": "lora", "init_weights_seed": None,
    "use_gating": False, "use_dora": False, "vera_d": None, "vera_b": None, "dtype": None,
}
#: Keys of a read-in inner config kept on re-save (the rest is derived from the tensors).
_KEPT = ("init_weights", "init_weights_seed", "dtype")
_QKV = ("q", "k", "v")


@dataclass(frozen=True)
class LoraLayout:
    """``layers``: the path of the layer list; ``modules``: module path inside a layer -> where the
    library puts LoRA there (``q``, ``k``, ``v``, ``qkv`` for a fused projection, ``intermediate``,
    ``output``)."""

    layers: str
    modules: dict[str, str] = field(default_factory=dict)


LORA_LAYOUTS: dict[str, LoraLayout] = {
    "bert": LoraLayout("encoder.layer", {
        "attention.self.query": "q", "attention.self.key": "k", "attention.self.value": "v",
        "intermediate.dense": "intermediate", "output.dense": "output"}),
    "gpt2": LoraLayout("h", {"attn.c_attn": "qkv", "mlp.c_fc": "intermediate", "mlp.c_proj": "output"}),
    "llama": LoraLayout("layers", {
        "self_attn.q_proj": "q", "self_attn.k_proj": "k", "self_attn.v_proj": "v",
        "mlp.down_proj": "intermediate", "mlp.up_proj": "output"}),
}


@dataclass
class LibraryLora:
    """What to write: the inner config and, per module (relative to the bare base model), the
    library's tensors (``lora_A``/``lora_B``; IA3: ``lora_B`` only)."""

    inner: dict[str, Any]
    tensors: dict[str, dict[str, Any]]


def _module_of(key: str, method: str) -> tuple[str, str]:
    """(module path, param) of a canonical PEFT key, or a refusal naming what has no place."""
    if method == "IA3":
        if key.endswith(".ia3_l"):
            return key[: -len(".ia3_l")], "ia3_l"
    else:
        for suffix in (".lora_A.weight", ".lora_B.weight"):
            if key.endswith(suffix):
                return key[: -len(suffix)], suffix[1:7]
        if ".lora_embedding_" in key:
            raise refusal(method, f"LoRA on the embedding layer {key.rsplit('.', 1)[0]!r}",
                          "the library puts LoRA on attention and feed-forward projections only")
        if key.endswith(".lora_B.bias"):
            raise refusal(method, "lora_bias=True", "the library's lora_B has no bias")
        if key.endswith(".lora_magnitude_vector") or ".lora_magnitude_vector." in key:
            raise refusal(method, "use_dora=True", "the library's DoRA computes another function")
    if ".modules_to_save." in key or key.endswith(".modules_to_save"):
        raise refusal(method, "modules_to_save", "the format has no place for full copies of base modules")
    raise refusal(method, f"tensor {key!r}", "it has no place in an AdapterHub-format file")


def _check_settings(cfg: dict[str, Any], method: str) -> None:
    if cfg.get("modules_to_save"):
        raise refusal(method, f"modules_to_save={cfg['modules_to_save']!r}",
                      "the format has no place for full copies of base modules (a prediction head is added "
                      "with add_head instead)")
    if cfg.get("trainable_token_indices"):
        raise refusal(method, "trainable_token_indices", "the format has no place for trained embedding rows")
    if method == "IA3":
        if cfg.get("feedforward_modules"):
            raise refusal(method, f"feedforward_modules={cfg['feedforward_modules']!r}",
                          "PEFT scales the input of feed-forward modules; the library's IA3 scales outputs only")
        return
    if cfg.get("use_dora"):
        raise refusal(method, "use_dora=True", "the library's DoRA normalises W + BA without the LoRA scaling and "
                      "rescales the bias, which computes another function")
    if str(cfg.get("bias", "none")) != "none":
        raise refusal(method, f"bias={cfg['bias']!r}", "the format has no place for trained base-layer biases")
    if cfg.get("lora_bias"):
        raise refusal(method, "lora_bias=True", "the library's lora_B has no bias")
    if cfg.get("layer_replication"):
        raise refusal(method, "layer_replication", "the library does not replicate layers")


def _locate(module: str, layout: LoraLayout, model_type: str, method: str) -> tuple[int, str]:
    m = re.match(rf"^{re.escape(layout.layers)}\.(\d+)\.(.+)$", module)
    where = layout.modules.get(m[2]) if m else None
    if where is None:
        raise refusal(method, f"target module {module!r}", f"adapters 1.3.0 puts {method} only on "
                      f"{', '.join(layout.modules)} of each {model_type} layer; its loader drops the rest")
    return int(m[1]), where


def _leave_out(adapter: AdapterFiles, present: set[int], method: str) -> list[int]:
    total = adapter.num_layers
    if total is None:
        saved = (adapter.extras.get("adapters_config") or {}).get("leave_out")
        if saved is not None:
            total = max([*present, *saved]) + 1
        elif present == set(range(max(present) + 1)) and not adapter.config.get("layers_to_transform"):
            return []
        else:
            raise refusal(method, f"layers {sorted(present)}", "the base model's layer count is unknown, so "
                          "leave_out cannot be written", hint="save it from an AdapterModel")
    return sorted(set(range(int(total))) - present)


def _scaling(cfg: dict[str, Any], module: str, rank: int, prefix: str | None) -> float:
    """PEFT's scaling of ``module``: its alpha (``alpha_pattern``, matched as PEFT matches it against
    the module's name in the model, which may carry the base prefix) over its rank (sqrt with rsLoRA)."""
    alpha = cfg.get("lora_alpha", 8)
    pattern = cfg.get("alpha_pattern") or {}
    names = [module] + ([f"{prefix}.{module}"] if prefix else [])
    for key, value in pattern.items():
        if any(re.match(rf"(.*\.)?({key})$", name) for name in names):
            alpha = value
            break
    return alpha / (math.sqrt(rank) if cfg.get("use_rslora") else rank)


def lora_plan(adapter: AdapterFiles, state: dict[str, Any], model_type: str, method: str) -> LibraryLora:
    """The library's tensors and inner config for a canonical PEFT LoRA ("LoRA") or IA3 ("IA3")
    whose keys are relative to the bare base model; raises a refusal when no exact form exists."""
    cfg = adapter.config
    _check_settings(cfg, method)
    layout = LORA_LAYOUTS.get(model_type)
    if layout is None:
        raise refusal(method, f"model_type={model_type!r}", "the writer knows where adapters 1.3.0 puts "
                      f"{method} on {', '.join(sorted(LORA_LAYOUTS))} models only")
    params: dict[str, dict[str, Any]] = {}
    for key, value in state.items():
        module, param = _module_of(key, method)
        params.setdefault(module, {})[param] = value
    if not params:
        raise refusal(method, "no weights", "an adapter without tensors has nothing to write")
    where: dict[str, tuple[int, str]] = {m: _locate(m, layout, model_type, method) for m in params}
    by_layer: dict[int, set[str]] = {}
    for layer, kind in where.values():
        by_layer.setdefault(layer, set()).add(kind)
    kinds = next(iter(by_layer.values()))
    for layer, got in by_layer.items():
        if got != kinds:
            first = min(by_layer)
            raise refusal(method, f"target_modules select {sorted(by_layer[first])} in layer {first} but "
                          f"{sorted(got)} in layer {layer}", "the format applies one set of modules to every "
                          "layer it does not leave out")
    inner = dict(LORA_DEFAULTS)
    inner.update({k: v for k, v in (adapter.extras.get("adapters_config") or {}).items() if k in _KEPT})
    if method == "IA3":
        tensors, letters = _ia3_tensors(params, where, kinds)
        inner.update(r=1, alpha=1, dropout=0.0, composition_mode="scale", init_weights="ia3")
    else:
        tensors, letters, r, alpha = _lora_tensors(cfg, params, where, method, adapter, BASE_PREFIXES.get(model_type))
        inner.update(r=r, alpha=alpha, dropout=cfg.get("lora_dropout", 0.0) or 0.0, composition_mode="add")
        if inner["init_weights"] == "ia3":
            inner["init_weights"] = "lora"
    inner.update(
        selfattn_lora=bool(letters), attn_matrices=letters,
        intermediate_lora="intermediate" in kinds, output_lora="output" in kinds,
        leave_out=_leave_out(adapter, set(by_layer), method),
    )
    return LibraryLora(inner, tensors)


def _ia3_tensors(params: dict[str, dict[str, Any]], where: dict[str, tuple[int, str]],
                 kinds: set[str]) -> tuple[dict, list[str]]:
    """IA3's vectors as ``lora_B`` [out, 1]. On a fused q/k/v projection a block of ones (the
    identity, as reading a library file that leaves the matrix out gives it) is left out."""
    tensors = {m: {"lora_B": p["ia3_l"].reshape(-1, 1)} for m, p in params.items()}
    fused = [m for m in params if where[m][1] == "qkv"]
    if not fused:
        return tensors, [x for x in _QKV if x in kinds]
    blocks = {m: tensors[m]["lora_B"].chunk(3, 0) for m in fused}
    letters = [x for i, x in enumerate(_QKV) if any(bool((b[i] != 1).any()) for b in blocks.values())] or list(_QKV)
    for m in fused:
        tensors[m] = {"lora_B": _cat([blocks[m][_QKV.index(x)] for x in letters])}
    return tensors, letters


def _lora_tensors(cfg: dict[str, Any], params: dict[str, dict[str, Any]], where: dict[str, tuple[int, str]],
                  method: str, adapter: AdapterFiles, prefix: str | None) -> tuple[dict, list[str], int, Any]:
    """(tensors, attn_matrices, r, alpha) of a LoRA: one rank and one scaling for every module;
    a fused ``c_attn`` gets one block per matrix (PEFT's A repeated, or its block-diagonal form)."""
    ranks = {m: int(p["lora_A"].shape[0]) for m, p in params.items()}
    scalings = {m: _scaling(cfg, m, ranks[m], prefix) for m in params}
    plain = {ranks[m] for m in params if where[m][1] != "qkv"}
    fused = [m for m in params if where[m][1] == "qkv"]
    if len(plain) > 1:
        raise refusal(method, f"ranks {sorted(plain)} (rank_pattern)", "the library uses one rank r for every module")
    if plain:
        r = plain.pop()
    else:  # only fused projections: the smallest rank whose blocks they all decompose into
        saved = (adapter.extras.get("adapters_config") or {}).get("r")
        candidates = [int(c) for c in (saved, cfg.get("r")) if c] + [min(ranks[m] for m in fused)]
        r = next((c for c in candidates if all(_decomposes(params[m], c) for m in fused)), candidates[-1])
    values = sorted(set(scalings.values()))
    if any(not math.isclose(v, values[0], rel_tol=1e-9, abs_tol=0.0) for v in values):
        raise refusal(method, f"scalings {values} (alpha_pattern / rank_pattern)",
                      "the library scales every module by one alpha / r")
    alpha: Any = values[0] * r
    if math.isclose(alpha, round(alpha), rel_tol=0.0, abs_tol=1e-9):
        alpha = int(round(alpha))
    tensors = {m: {"lora_A": p["lora_A"], "lora_B": p["lora_B"]} for m, p in params.items() if m not in fused}
    letters = [x for x in _QKV if any(where[m][1] == x for m in params)]
    if fused:
        blocks = {m: _fused_blocks(params[m]["lora_A"], params[m]["lora_B"], r, m, method) for m in fused}
        letters = [x for x in _QKV if any(x in b for b in blocks.values())]
        for m, per_letter in blocks.items():
            a_like, b_like = params[m]["lora_A"], params[m]["lora_B"]
            out = b_like.shape[0] // 3
            parts = [per_letter.get(x) or (a_like.new_zeros(r, a_like.shape[1]), b_like.new_zeros(out, r))
                     for x in letters]
            tensors[m] = {"lora_A": _cat([a for a, _ in parts]), "lora_B": _cat([b for _, b in parts])}
    return tensors, letters, r, alpha


def _cat(parts: list[Any]) -> Any:
    import torch

    return torch.cat(parts, 0).contiguous()


def _decomposes(params: dict[str, Any], r: int) -> bool:
    try:
        _fused_blocks(params["lora_A"], params["lora_B"], r, "", "LoRA")
    except UnsupportedOperationError:
        return False
    return True


def _fused_blocks(a: Any, b: Any, r: int, module: str, method: str) -> dict[str, tuple[Any, Any]]:
    """letter -> (A block [r, in], B block [out/3, r]) of a PEFT LoRA on a fused q/k/v projection.

    Rank r: PEFT's one A serves all three outputs, so every block gets it. Rank k*r: exact only when
    B is block-diagonal (each r-column chunk feeds one of q/k/v, each at most once), which is how a
    library LoRA reads back; the matrices no chunk feeds are left out.
    """
    rank, out = int(a.shape[0]), int(b.shape[0]) // 3
    if rank == r:
        return {x: (a, b[i * out:(i + 1) * out]) for i, x in enumerate(_QKV)}
    if rank % r == 0 and rank // r <= 3:
        found: dict[str, tuple[Any, Any]] = {}
        for chunk in range(rank // r):
            cols = slice(chunk * r, (chunk + 1) * r)
            fed = [i for i in range(3) if b[i * out:(i + 1) * out, cols].any()]
            if len(fed) != 1 or _QKV[fed[0]] in found:
                break
            i = fed[0]
            others = [j for j in range(3) if j != i]
            if any(b[j * out:(j + 1) * out, cols].any() for j in others):
                break
            found[_QKV[i]] = (a[cols], b[i * out:(i + 1) * out, cols])
        else:
            return found
    raise refusal(method, f"rank {rank} on the fused projection {module!r}", f"the library's merged layer "
                  f"takes one rank-{r} block per query/key/value matrix, and this delta has no such form")
