"""LoRA and IA3 in AdapterHub's ``adapters`` format, converted to and from PEFT's form (exactly).

``adapters`` 1.3.0 keeps LoRA as ``<module>.loras.<name>.lora_A`` / ``lora_B`` plus an inner config
(``r``, ``alpha``, ``attn_matrices``, ``leave_out``, ...), and IA3 as LoRA with
``composition_mode="scale"`` (``lora_B`` [out, 1] multiplies the module output, which is PEFT IA3
on a module that is not in ``feedforward_modules``). Where it puts them is fixed per model type
(:data:`.adapters_lora_layout.LORA_LAYOUTS`).

GPT-2's fused ``c_attn`` (query, key and value in one Conv1D) is a ``LoRAMergedLinear`` there: one
rank-r block per enabled matrix, ``lora_A`` [n*r, in] and ``lora_B`` [n*out/3, r], block i of the
output computed from block i of A. A PEFT LoRA on ``c_attn`` (one A for all three outputs) is
written with ``attn_matrices=["q","k","v"]``, its A repeated per block and B kept; read back, three
equal A blocks give PEFT's rank-r LoRA again, anything else (the library's own q/v LoRAs) a PEFT
LoRA of rank n*r with the blocks on the diagonal (``rank_pattern`` / ``alpha_pattern`` for those
modules, same scaling). IA3 keeps its vector (ones for the matrices the file leaves out).

A write the format cannot hold exactly is refused before anything is written
(:func:`~adapterhub.toolkit.adapters_format.layout.refusal`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ...errors import AdapterFormatError, UnsupportedOperationError
from ...plugin.records import CONFIG_NAME, FLOAT_DTYPES, AdapterFiles
from ..adapters_format.heads import read_head, read_static_head
from ..adapters_format.layout import BASE_PREFIXES, adapter_name, full_config, meta, read_raw, write
from ..safetensors_header import DtypeRule
from .adapters_lora_layout import LORA_DEFAULTS, LibraryLora, lora_plan

_LORA_KEY = re.compile(r"^(?P<module>.+)\.loras\.(?P<name>[^.]+)\.(?P<param>lora_A|lora_B)$")
_QKV = ("q", "k", "v")


def read_adapters_lora(path: str | Path, config: dict, allow_pickle: bool = False,
                       dtypes: DtypeRule = FLOAT_DTYPES) -> AdapterFiles:
    """An adapters-format LoRA (method "lora") or IA3 (composition_mode "scale": method "ia3")
    converted to PEFT's config and key naming, keys relative to the bare base model."""
    path = Path(path)
    inner = {**LORA_DEFAULTS, **(config.get("config") or {})}
    for flag in ("use_gating", "use_dora"):
        if inner.get(flag):
            raise UnsupportedOperationError(
                f"{path / CONFIG_NAME}: config.{flag}=true is not supported for conversion to PEFT",
                hint="only plain LoRA and IA3 adapters can be read from the adapters format",
            )
    if inner.get("vera_d") is not None or inner.get("vera_b") is not None:
        raise UnsupportedOperationError(f"{path / CONFIG_NAME}: VeRA adapters are not supported")
    state, _ = read_raw(path, config, allow_pickle, dtypes)
    is_ia3 = inner.get("composition_mode") == "scale"
    r, alpha = inner["r"], inner["alpha"]
    if is_ia3 and r != alpha:
        raise UnsupportedOperationError(
            f"{path / CONFIG_NAME}: IA3 with alpha ({alpha}) != r ({r}) has no PEFT equivalent")
    model_type = str(config.get("model_type") or "")
    letters = [m for m in _QKV if m in (inner.get("attn_matrices") or [])]
    tensors: dict[str, dict[str, Any]] = {}
    for key, value in state.items():
        m = _LORA_KEY.match(key)
        if not m:
            raise AdapterFormatError(f"{path}: unexpected key {key!r} in a LoRA/IA3 adapter")
        tensors.setdefault(m["module"], {})[m["param"]] = value
    canonical: dict[str, Any] = {}
    rank_pattern: dict[str, int] = {}
    alpha_pattern: dict[str, Any] = {}
    for module, params in sorted(tensors.items()):
        fused = _is_fused(model_type, module)
        if is_ia3:
            if set(params) != {"lora_B"}:
                raise AdapterFormatError(f"{path}: IA3 adapter with unexpected tensors {sorted(params)} on {module!r}")
            vector = params["lora_B"].reshape(-1, 1)
            if fused:
                vector = _expand_fused_vector(vector, letters, path, module)
            canonical[f"{module}.ia3_l"] = vector
            continue
        if set(params) != {"lora_A", "lora_B"}:
            raise AdapterFormatError(f"{path}: LoRA adapter with tensors {sorted(params)} on {module!r}")
        a, b = params["lora_A"], params["lora_B"]
        if fused and letters:
            a, b = _fused_to_peft(a, b, letters, int(r), path, module)
            if a.shape[0] != r:  # distinct blocks: PEFT rank n*r, the same scaling
                pattern_key = re.escape(module)
                rank_pattern[pattern_key] = int(a.shape[0])
                alpha_pattern[pattern_key] = alpha * a.shape[0] / r
        canonical[f"{module}.lora_A.weight"] = a.contiguous()
        canonical[f"{module}.lora_B.weight"] = b
    targets = sorted(tensors)
    common = {"base_model_name_or_path": config.get("model_name") or None, "revision": None,
              "task_type": None, "inference_mode": True, "modules_to_save": None,
              "target_modules": targets, "exclude_modules": None, "fan_in_fan_out": model_type == "gpt2"}
    if is_ia3:
        peft_config = {**common, "peft_type": "IA3", "feedforward_modules": [], "init_ia3_weights": True}
        method = "ia3"
    else:
        peft_config = {**common, "peft_type": "LORA", "r": r, "lora_alpha": alpha,
                       "lora_dropout": inner.get("dropout", 0.0), "bias": "none",
                       "use_rslora": False, "use_dora": False, "init_lora_weights": True,
                       "rank_pattern": rank_pattern, "alpha_pattern": alpha_pattern, "layers_to_transform": None,
                       "layers_pattern": None}
        method = "lora"
    return AdapterFiles(
        method=method, config=peft_config, state_dict=canonical, format="adapters", source=str(path),
        head=read_head(path, allow_pickle), static_head=read_static_head(path, allow_pickle),
        extras={"adapters_meta": meta(config), "adapters_config": dict(inner), "key_root": "base_model"},
    )


def _is_fused(model_type: str, module: str) -> bool:
    from .adapters_lora_layout import LORA_LAYOUTS

    layout = LORA_LAYOUTS.get(model_type)
    return layout is not None and any(module.endswith("." + m) for m, where in layout.modules.items()
                                      if where == "qkv")


def _fused_to_peft(a: Any, b: Any, letters: list[str], r: int, path: Path, module: str) -> tuple[Any, Any]:
    """``LoRAMergedLinear`` blocks -> PEFT's (A, B) on the fused layer (exactly the same delta)."""
    import torch

    n = len(letters)
    if a.shape[0] != n * r or b.shape[0] % n or b.shape[1] != r:
        raise AdapterFormatError(
            f"{path}: {module} lora_A {tuple(a.shape)} / lora_B {tuple(b.shape)} do not fit attn_matrices "
            f"{letters} with r={r}")
    out = b.shape[0] // n  # one of query/key/value
    a_blocks = a.split(r, 0)
    b_blocks = b.split(out, 0)
    if n == 3 and all(torch.equal(a_blocks[0], blk) for blk in a_blocks[1:]):
        return a_blocks[0].clone(), b.clone()  # PEFT's shared A, written repeated per block
    full_b = b.new_zeros(3 * out, n * r)
    for i, letter in enumerate(letters):
        row = _QKV.index(letter) * out
        full_b[row:row + out, i * r:(i + 1) * r] = b_blocks[i]
    return a.clone(), full_b


def _expand_fused_vector(vector: Any, letters: list[str], path: Path, module: str) -> Any:
    """An IA3 ``lora_B`` over the enabled matrices of a fused layer -> the vector over all three (ones
    where the file leaves a matrix out: IA3's identity)."""
    import torch

    n = len(letters)
    if n == 0 or vector.shape[0] % n:
        raise AdapterFormatError(f"{path}: {module} IA3 vector {tuple(vector.shape)} does not fit attn_matrices {letters}")
    out = vector.shape[0] // n
    full = torch.ones(3 * out, 1, dtype=vector.dtype)
    for i, letter in enumerate(letters):
        row = _QKV.index(letter) * out
        full[row:row + out] = vector[i * out:(i + 1) * out]
    return full


def write_adapters_lora(adapter: AdapterFiles, path: str | Path, model_type: str | None) -> list[Path]:
    """Write a canonical LoRA/IA3 ``AdapterFiles`` as an adapters-format directory (safetensors).

    Everything is checked and converted before the folder is created: a LoRA or IA3 the library
    would not compute exactly is refused (:func:`.adapters_lora_layout.lora_plan`).
    """
    model_type = model_type or adapter.model_type or str((adapter.extras.get("adapters_meta") or {})
                                                         .get("model_type") or "")
    method = "IA3" if str(adapter.config.get("peft_type", "LORA")).upper() == "IA3" else "LoRA"
    state = _relative_to_base(adapter.state_dict, model_type)
    plan: LibraryLora = lora_plan(adapter, state, model_type, method)
    name = adapter_name(adapter)
    tensors: dict[str, Any] = {}
    for module, params in plan.tensors.items():
        for param, value in params.items():
            tensors[f"{module}.loras.{name}.{param}"] = value
    return write(path, full_config(plan.inner, adapter, name, model_type), tensors, adapter)


def _relative_to_base(state: dict[str, Any], model_type: str) -> dict[str, Any]:
    """Keys relative to the bare base model: a PEFT export from a wrapper (``GPT2LMHeadModel``)
    carries the base-model prefix (``transformer.``), which the AdapterHub layout does not."""
    prefix = BASE_PREFIXES.get(model_type)
    if prefix and state and all(k.startswith(prefix + ".") for k in state):
        return {k[len(prefix) + 1:]: v for k, v in state.items()}
    return dict(state)

