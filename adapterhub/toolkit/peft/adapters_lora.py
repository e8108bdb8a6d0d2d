"""LoRA and IA3 in AdapterHub's ``adapters`` format, converted to and from PEFT's form (exactly).

``adapters`` keeps LoRA as ``<module>.loras.<name>.lora_A`` / ``lora_B`` plus an inner config
(``r``, ``alpha``, ``attn_matrices``, ...), and IA3 as LoRA with ``composition_mode="scale"``
(``lora_B`` [out, 1] multiplies the module output, which is PEFT IA3 on a non-feed-forward module).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ...errors import AdapterFormatError, UnsupportedOperationError
from ...plugin.contract import CONFIG_NAME, FLOAT_DTYPES, AdapterFiles
from ..adapters_format.heads import read_head, read_static_head
from ..adapters_format.layout import adapter_name, full_config, meta, read_raw, write
from ..safetensors_header import DtypeRule

LORA_DEFAULTS: dict[str, Any] = {
    "architecture": "lora", "selfattn_lora": True, "intermediate_lora": False, "output_lora": False,
    "leave_out": [], "r": 8, "alpha": 8, "dropout": 0.0, "attn_matrices": ["q", "v"],
    "composition_mode": "add", "init_weights": "lora", "init_weights_seed": None,
    "use_gating": False, "use_dora": False, "vera_d": None, "vera_b": None, "dtype": None,
}
_ATTN_LETTER = {"query": "q", "key": "k", "value": "v", "q_proj": "q", "k_proj": "k", "v_proj": "v"}


_LORA_KEY = re.compile(r"^(?P<module>.+)\.loras\.(?P<name>[^.]+)\.(?P<param>lora_A|lora_B)$")


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
    canonical: dict[str, Any] = {}
    modules: set[str] = set()
    for key, value in state.items():
        m = _LORA_KEY.match(key)
        if not m:
            raise AdapterFormatError(f"{path}: unexpected key {key!r} in a LoRA/IA3 adapter")
        modules.add(m["module"])
        if is_ia3:
            if m["param"] != "lora_B":
                raise AdapterFormatError(f"{path}: IA3 adapter with unexpected tensor {key!r}")
            if r != alpha:
                raise UnsupportedOperationError(
                    f"{path / CONFIG_NAME}: IA3 with alpha ({alpha}) != r ({r}) has no PEFT equivalent"
                )
            # adapters' "scale" mode multiplies the module output by lora_B [out, 1], which is
            # PEFT IA3 on a non-feed-forward module (ia3_l [out, 1]).
            canonical[f"{m['module']}.ia3_l"] = value.reshape(-1, 1)
        else:
            canonical[f"{m['module']}.{m['param']}.weight"] = value
    targets = sorted(modules)
    common = {"base_model_name_or_path": config.get("model_name") or None, "revision": None,
              "task_type": None, "inference_mode": True, "modules_to_save": None,
              "target_modules": targets, "exclude_modules": None, "fan_in_fan_out": False}
    if is_ia3:
        peft_config = {**common, "peft_type": "IA3", "feedforward_modules": [], "init_ia3_weights": True}
        method = "ia3"
    else:
        peft_config = {**common, "peft_type": "LORA", "r": r, "lora_alpha": alpha,
                       "lora_dropout": inner.get("dropout", 0.0), "bias": "none",
                       "use_rslora": False, "use_dora": False, "init_lora_weights": True,
                       "rank_pattern": {}, "alpha_pattern": {}, "layers_to_transform": None,
                       "layers_pattern": None}
        method = "lora"
    return AdapterFiles(
        method=method, config=peft_config, state_dict=canonical, format="adapters", source=str(path),
        head=read_head(path, allow_pickle), static_head=read_static_head(path, allow_pickle),
        extras={"adapters_meta": meta(config), "adapters_config": dict(inner), "key_root": "base_model"},
    )


def _derive_lora_inner(adapter: AdapterFiles, modules: list[str], is_ia3: bool) -> dict:
    cfg = adapter.config
    letters = sorted({_ATTN_LETTER[m.rsplit(".", 1)[-1]] for m in modules if m.rsplit(".", 1)[-1] in _ATTN_LETTER})
    inner = dict(LORA_DEFAULTS)
    inner.update(
        attn_matrices=letters,
        selfattn_lora=bool(letters),
        intermediate_lora=any(m.endswith("intermediate.dense") for m in modules),
        output_lora=any(m.endswith("output.dense") and ".attention." not in m for m in modules),
    )
    if is_ia3:
        inner.update(r=1, alpha=1, composition_mode="scale", init_weights="ia3")
    else:
        inner.update(r=int(cfg.get("r", 8)), alpha=cfg.get("lora_alpha", 8), dropout=cfg.get("lora_dropout", 0.0))
    return inner


def write_adapters_lora(adapter: AdapterFiles, path: str | Path, model_type: str | None) -> list[Path]:
    """Write a canonical LoRA/IA3 ``AdapterFiles`` as an adapters-format directory (safetensors)."""
    cfg = adapter.config
    peft_type = str(cfg.get("peft_type", "LORA")).upper()
    is_ia3 = peft_type == "IA3"
    if not is_ia3:
        if cfg.get("use_dora") or cfg.get("use_rslora") or cfg.get("rank_pattern") or cfg.get("alpha_pattern"):
            raise UnsupportedOperationError(
                "this LoRA uses DoRA, rsLoRA or per-module rank/alpha patterns, which the adapters format "
                "cannot express", hint="save it with format='peft'")
        if cfg.get("bias", "none") != "none":
            raise UnsupportedOperationError("LoRA with trained biases cannot be written in the adapters format",
                                            hint="save it with format='peft'")
    if is_ia3 and cfg.get("feedforward_modules"):
        raise UnsupportedOperationError(
            "IA3 on feed-forward modules scales inputs, which the adapters format cannot express",
            hint="save it with format='peft'")
    name = adapter_name(adapter)
    tensors: dict[str, Any] = {}
    modules: set[str] = set()
    for key, value in adapter.state_dict.items():
        if is_ia3 and key.endswith(".ia3_l"):
            module = key[: -len(".ia3_l")]
            tensors[f"{module}.loras.{name}.lora_B"] = value.reshape(-1, 1)
        elif not is_ia3 and (key.endswith(".lora_A.weight") or key.endswith(".lora_B.weight")):
            module, param = key[: -len(".weight")].rsplit(".", 1)
            tensors[f"{module}.loras.{name}.{param}"] = value
        else:
            raise UnsupportedOperationError(
                f"tensor {key!r} has no place in an adapters-format {'IA3' if is_ia3 else 'LoRA'} file",
                hint="save it with format='peft'")
        modules.add(module)
    inner = adapter.extras.get("adapters_config") or _derive_lora_inner(adapter, sorted(modules), is_ia3)
    return write(path, full_config(dict(inner), adapter, name, model_type), tensors, adapter)


