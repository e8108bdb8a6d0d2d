"""AdapterHub ``adapters``-library format (1.x; older adapter-transformers files too).

Layout of one adapter directory::

    adapter_config.json      {"config": {...}, "name", "model_type", "hidden_size", "version", ...}
    adapter.safetensors      or pytorch_adapter.bin (torch pickle, refused unless allow_pickle)
    head_config.json         optional prediction head saved with the adapter
    model_head.safetensors   or pytorch_model_head.bin

Weight keys embed the adapter name (``...output.adapters.<name>.adapter_up.weight``) and, when the
file was saved from a model with heads, the base-model prefix (``bert.``). Canonical forms used by
adapterhub's methods drop both:

* keys are relative to the **bare base model** (``model.base_model``: the ``BertModel`` inside a
  ``BertForSequenceClassification``). Methods resolve them against ``model.base_model``; use
  :func:`rebase_keys` to get keys relative to a wrapper model. ``AdapterFiles.extras["key_root"]``
  is ``"base_model"`` for everything read here.
* bottleneck: ``<module>.adapters.<param>`` (name removed), config = the inner ``config`` dict.
* LoRA / IA3: PEFT naming (``<module>.lora_A.weight``, ``<module>.ia3_l``) and a PEFT config.
* prefix tuning: PEFT ``prompt_embeddings`` [prefix_length, n_layers*2*hidden] (the MLP is folded
  in, exactly what the reparameterisation computes in eval mode); prompt tuning: PEFT
  ``prompt_embeddings`` [prompt_length, hidden] with ``extras["prompt_position"]="after_embeddings"``.

Nothing here imports torch at module level.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ..errors import AdapterFormatError, PickleRefusedError, UnsupportedOperationError
from ..fileio import atomic_write_bytes
from ..methods import AdapterFiles

CONFIG_FILE = "adapter_config.json"
WEIGHTS_SAFETENSORS = "adapter.safetensors"
WEIGHTS_PICKLE = "pytorch_adapter.bin"
HEAD_CONFIG_FILE = "head_config.json"
HEAD_SAFETENSORS = "model_head.safetensors"
HEAD_PICKLE = "pytorch_model_head.bin"
WRITTEN_VERSION = "adapters.1.3.0"

#: base_model_prefix of the transformers classes for the model types adapters supports.
BASE_PREFIXES = {
    "bert": "bert", "roberta": "roberta", "xlm-roberta": "roberta", "distilbert": "distilbert",
    "albert": "albert", "electra": "electra", "deberta": "deberta", "deberta-v2": "deberta",
    "xmod": "roberta", "bert-generation": "bert", "gpt2": "transformer", "gptj": "transformer",
    "llama": "model", "mistral": "model", "bart": "model", "mbart": "model", "t5": "transformer",
    "mt5": "transformer", "vit": "vit", "beit": "beit", "plbart": "model", "whisper": "model",
}

#: Legacy names (adapter-transformers 1.x-3.x) -> current names, applied to every key on load.
LEGACY_RENAMES = (
    ("attention_text_task_adapters", "adapters"),
    ("attention_text_lang_adapters", "adapters"),
    ("layer_text_task_adapters", "adapters"),
    ("layer_text_lang_adapters", "adapters"),
    ("invertible_lang_adapters", "invertible_adapters"),
)

#: Every BnConfig field of adapters 1.3.0 with its class default (the key set we write).
BN_DEFAULTS: dict[str, Any] = {
    "mh_adapter": False, "output_adapter": True, "reduction_factor": 16, "non_linearity": "relu",
    "original_ln_before": True, "original_ln_after": True, "ln_before": False, "ln_after": False,
    "init_weights": "bert", "init_weights_seed": None, "is_parallel": False, "scaling": 1.0,
    "use_gating": False, "residual_before_ln": True, "adapter_residual_before_ln": False,
    "inv_adapter": None, "inv_adapter_reduction_factor": None, "cross_adapter": False,
    "leave_out": [], "dropout": 0.0, "phm_layer": False, "phm_dim": 4, "factorized_phm_W": True,
    "shared_W_phm": False, "shared_phm_rule": True, "factorized_phm_rule": False,
    "phm_c_init": "normal", "phm_init_range": 0.0001, "learn_phm": True,
    "hypercomplex_nonlinearity": "glorot-uniform", "phm_rank": 1, "phm_bias": True,
    "stochastic_depth": 0.0,
}

#: The presets adapters names (and the legacy aliases), as overrides of BN_DEFAULTS.
BN_PRESETS: dict[str, dict[str, Any]] = {
    "seq_bn": {},
    "double_seq_bn": {"mh_adapter": True, "non_linearity": "swish", "original_ln_before": False},
    "par_bn": {"original_ln_before": False, "is_parallel": True, "reduction_factor": 2,
               "scaling": 4.0, "init_weights": "mam_adapter"},
}
# Compacter (PHM layers): CompacterConfig is double_seq_bn, CompacterPlusPlusConfig seq_bn, both with these.
BN_PRESETS["compacter"] = {**BN_PRESETS["double_seq_bn"], "phm_layer": True, "reduction_factor": 32,
                           "non_linearity": "gelu"}
BN_PRESETS["compacter++"] = {"phm_layer": True, "reduction_factor": 32, "non_linearity": "gelu"}
BN_PRESETS["pfeiffer"] = BN_PRESETS["seq_bn"]
BN_PRESETS["houlsby"] = BN_PRESETS["double_seq_bn"]
BN_PRESETS["parallel"] = BN_PRESETS["par_bn"]

LORA_DEFAULTS: dict[str, Any] = {
    "architecture": "lora", "selfattn_lora": True, "intermediate_lora": False, "output_lora": False,
    "leave_out": [], "r": 8, "alpha": 8, "dropout": 0.0, "attn_matrices": ["q", "v"],
    "composition_mode": "add", "init_weights": "lora", "init_weights_seed": None,
    "use_gating": False, "use_dora": False, "vera_d": None, "vera_b": None, "dtype": None,
}
_ATTN_LETTER = {"query": "q", "key": "k", "value": "v", "q_proj": "q", "k_proj": "k", "v_proj": "v"}


# --- detection ---------------------------------------------------------------------------------


def is_adapters_format(config: dict) -> bool:
    """Whether a parsed ``adapter_config.json`` is AdapterHub-format (not PEFT)."""
    return (
        isinstance(config, dict)
        and "peft_type" not in config
        and isinstance(config.get("config"), dict)
        and "name" in config
    )


def architecture(config: dict) -> str:
    """``bottleneck`` (no architecture key), ``lora``, ``ia3``, ``prefix_tuning``, ``prompt_tuning``, ..."""
    inner = config.get("config") or {}
    arch = inner.get("architecture")
    if arch is None:
        return "bottleneck"
    if arch == "lora" and inner.get("composition_mode") == "scale":
        return "ia3"
    return str(arch)


# --- low-level reading -------------------------------------------------------------------------


def _load_tensors(path: Path, safetensors_name: str, pickle_name: str, allow_pickle: bool) -> dict:
    safe = path / safetensors_name
    if safe.is_file():
        from safetensors.torch import load_file

        return load_file(str(safe))
    pickled = path / pickle_name
    if pickled.is_file():
        if not allow_pickle:
            raise PickleRefusedError(
                f"{pickled}: weights are a torch pickle, which can run code when loaded; refused",
                hint="pass allow_pickle=True (or --allow-pickle) if you trust this file; it is then "
                "loaded with torch.load(weights_only=True). Re-saving converts it to safetensors.",
            )
        import torch

        try:
            return torch.load(str(pickled), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is a format error
            raise AdapterFormatError(f"{pickled}: cannot be loaded safely ({exc})") from None
    raise AdapterFormatError(
        f"{path}: no weights file ({safetensors_name} or {pickle_name})",
        hint="an AdapterHub-format adapter directory holds its weights next to adapter_config.json",
    )


def _legacy_rename(key: str) -> str:
    for old, new in LEGACY_RENAMES:
        key = key.replace(old, new)
    return key


def _base_prefix(config: dict, keys: list[str]) -> str | None:
    """The base-model prefix the keys carry (``bert``), or None when saved from a bare base model."""
    candidates = {BASE_PREFIXES.get(str(config.get("model_type", "")))} | set(BASE_PREFIXES.values())
    body = [k for k in keys if not k.startswith("heads.")]
    if not body:
        return None
    first = {k.split(".", 1)[0] for k in body}
    if len(first) == 1:
        (only,) = first
        if only in candidates and only not in {"encoder", "layers", "h", "prefix_tuning", "prompt_tuning"}:
            return only
    return None


def read_raw(path: str | Path, config: dict, allow_pickle: bool) -> tuple[dict, str | None]:
    """Weights with legacy renames applied and the base-model prefix removed, plus that prefix."""
    path = Path(path)
    state = _load_tensors(path, WEIGHTS_SAFETENSORS, WEIGHTS_PICKLE, allow_pickle)
    state = {_legacy_rename(k): v for k, v in state.items()}
    prefix = _base_prefix(config, list(state))
    if prefix:
        state = {k[len(prefix) + 1:] if k.startswith(prefix + ".") else k: v for k, v in state.items()}
    return state, prefix


def _meta(config: dict) -> dict:
    return {k: v for k, v in config.items() if k != "config"}


def _read_head_config(path: Path) -> dict | None:
    """The parsed ``head_config.json`` in the adapter folder ``path``; None if there is none."""
    head_config_path = path / HEAD_CONFIG_FILE
    if not head_config_path.is_file():
        return None
    try:
        return json.loads(head_config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AdapterFormatError(f"{head_config_path}: not valid JSON ({exc})") from None


def read_head(path: str | Path, allow_pickle: bool) -> dict | None:
    """A prediction head saved beside the adapter: {"config", "state_dict" (keys from the head's
    Sequential: ``1.weight``...), "name"}; None if there is none."""
    path = Path(path)
    head_config = _read_head_config(path)
    if head_config is None:
        return None
    if head_config.get("config") is None:
        return None  # a static head (the model class's own, e.g. lm_head): see read_static_head
    state = _load_tensors(path, HEAD_SAFETENSORS, HEAD_PICKLE, allow_pickle)
    name = head_config.get("name", "")
    prefix = f"heads.{name}."
    head_state = {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}
    return {"config": head_config.get("config", {}), "state_dict": head_state, "name": name,
            "hidden_size": head_config.get("hidden_size")}


def read_static_head(path: str | Path, allow_pickle: bool) -> dict | None:
    """The model class's own head saved beside the adapter (``head_config.json`` with ``"config": null``).

    ``adapters`` writes one when saving from a model with a fixed head (``GPT2LMHeadModel``:
    ``lm_head.weight``) and loads it back into the model. Keys are relative to the whole model.
    Returns {"state_dict", "model_class", "source"} or None.
    """
    path = Path(path)
    head_config = _read_head_config(path)
    if head_config is None:
        return None
    if head_config.get("config") is not None:
        return None
    state = _load_tensors(path, HEAD_SAFETENSORS, HEAD_PICKLE, allow_pickle)
    return {"state_dict": state, "model_class": head_config.get("model_class"), "source": str(path)}


def _own_tensor(model: Any, key: str) -> Any:
    """The tensor ``model.state_dict()[key]`` would hold, looked up alone (None where that key is absent).

    Building the whole state dict copies every key of a large model on each load just to read one or
    two heads. ``state_dict`` lists, per module, its non-None parameters and its non-None persistent
    buffers under the module's own path; a tied weight (GPT-2 ``lm_head.weight`` is ``wte.weight``)
    is listed under every module holding it, so resolving the owning module by path finds it too.
    """
    module_path, _, leaf = key.rpartition(".")
    try:
        module = model.get_submodule(module_path)
    except AttributeError:
        return None
    parameter = module._parameters.get(leaf)
    if parameter is not None:
        return parameter.detach()
    buffer = module._buffers.get(leaf)
    if buffer is not None and leaf not in module._non_persistent_buffers_set:
        return buffer.detach()
    return None


def check_static_head(model: Any, adapter: AdapterFiles) -> None:
    """Accept a static head only if it equals the model's own weights (the usual case: it was saved
    along untouched). A changed static head would replace base weights (tied embeddings too), which
    adapterhub does not do: refuse it by name. Keys are relative to ``model`` itself (as its
    ``state_dict`` names them), looked up one at a time."""
    static = adapter.extras.get("static_head")
    if not static:
        return
    import torch

    where = Path(static["source"]) / HEAD_SAFETENSORS
    for key, value in static["state_dict"].items():
        own = _own_tensor(model, key)
        if own is None:
            raise UnsupportedOperationError(
                f"{where}: static head tensor {key!r} has no counterpart in {type(model).__name__}",
                hint=f"the adapter was saved from {static.get('model_class') or 'another model class'}; load it "
                "on that class, or delete head_config.json and the head weights to use the adapter alone")
        if own.shape != value.shape or not torch.equal(own.cpu().to(value.dtype), value):
            raise UnsupportedOperationError(
                f"{where}: static head tensor {key!r} differs from the model's own weights; adapterhub does not "
                "overwrite base weights", hint="delete head_config.json and the head weights to use the adapter "
                "with the model's own head")


# --- writing -------------------------------------------------------------------------------------


def write_json(target: Path, obj: Any) -> Path:
    return atomic_write_bytes(target, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def write_tensors(target: Path, tensors: dict, metadata: dict | None = None) -> Path:
    from safetensors.torch import save

    # safetensors refuses aliased storage: give every tensor its own contiguous copy.
    data = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    return atomic_write_bytes(target, save(data, metadata=metadata or {"format": "pt"}))


def _full_config(inner: dict, adapter: AdapterFiles, name: str, model_type: str | None) -> dict:
    meta = dict(adapter.extras.get("adapters_meta") or {})
    return {
        "config": inner,
        "hidden_size": meta.get("hidden_size", adapter.extras.get("hidden_size")),
        "model_class": meta.get("model_class", ""),
        "model_name": meta.get("model_name", ""),
        "model_type": model_type or meta.get("model_type", ""),
        "name": name,
        "version": WRITTEN_VERSION,
    }


def _write(path: str | Path, full_config: dict, tensors: dict, adapter: AdapterFiles) -> list[Path]:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    written = [write_tensors(path / WEIGHTS_SAFETENSORS, tensors), write_json(path / CONFIG_FILE, full_config)]
    head = adapter.extras.get("head")
    if head:
        name = full_config["name"]
        head_full = {"config": head["config"], "hidden_size": head.get("hidden_size") or full_config["hidden_size"],
                     "model_class": full_config["model_class"], "model_name": full_config["model_name"],
                     "model_type": full_config["model_type"], "name": name, "version": WRITTEN_VERSION}
        written.append(write_tensors(path / HEAD_SAFETENSORS,
                                     {f"heads.{name}.{k}": v for k, v in head["state_dict"].items()}))
        written.append(write_json(path / HEAD_CONFIG_FILE, head_full))
    return written


def _adapter_name(adapter: AdapterFiles) -> str:
    return str((adapter.extras.get("adapters_meta") or {}).get("name") or adapter.extras.get("name") or "adapter")


# --- bottleneck ----------------------------------------------------------------------------------

_BN_KEY = re.compile(r"^(?P<module>.+)\.adapters\.(?P<name>[^.]+)\.(?P<param>.+)$")
# Compacter's per-adapter shared PHM parameters (phm_rule, shared W): canonical "shared_parameters.<param>".
_BN_SHARED_KEY = re.compile(r"^shared_parameters\.(?P<name>[^.]+)\.(?P<param>[^.]+)$")


def read_adapters_bottleneck(path: str | Path, config: dict, allow_pickle: bool = False) -> AdapterFiles:
    """A bottleneck adapter in canonical form: keys ``<module>.adapters.<param>``."""
    state, _ = read_raw(path, config, allow_pickle)
    inner = {**BN_DEFAULTS, **(config.get("config") or {})}
    canonical: dict[str, Any] = {}
    for key, value in state.items():
        shared = _BN_SHARED_KEY.match(key)
        if shared:
            canonical[f"shared_parameters.{shared['param']}"] = value
            continue
        m = _BN_KEY.match(key)
        if not m:
            raise AdapterFormatError(
                f"{Path(path) / WEIGHTS_SAFETENSORS}: unexpected key {key!r} for a bottleneck adapter",
                hint="invertible adapters and AdapterFusion are not supported",
            )
        canonical[f"{m['module']}.adapters.{m['param']}"] = value
    return AdapterFiles(
        method="bottleneck", config=inner, state_dict=canonical, format="adapters", source=str(path),
        extras={"adapters_meta": _meta(config), "key_root": "base_model",
                "head": read_head(path, allow_pickle), "static_head": read_static_head(path, allow_pickle)},
    )


def write_adapters_bottleneck(adapter: AdapterFiles, path: str | Path, model_type: str | None = None) -> list[Path]:
    name = _adapter_name(adapter)
    inner = {**BN_DEFAULTS, **{k: v for k, v in adapter.config.items() if k in BN_DEFAULTS}}
    tensors = {k.replace("shared_parameters.", f"shared_parameters.{name}.", 1) if k.startswith("shared_parameters.")
               else k.replace(".adapters.", f".adapters.{name}.", 1): v for k, v in adapter.state_dict.items()}
    return _write(path, _full_config(inner, adapter, name, model_type), tensors, adapter)


# --- LoRA / IA3 ----------------------------------------------------------------------------------

_LORA_KEY = re.compile(r"^(?P<module>.+)\.loras\.(?P<name>[^.]+)\.(?P<param>lora_A|lora_B)$")


def read_adapters_lora(path: str | Path, config: dict, allow_pickle: bool = False) -> AdapterFiles:
    """An adapters-format LoRA (method "lora") or IA3 (composition_mode "scale": method "ia3")
    converted to PEFT's config and key naming, keys relative to the bare base model."""
    path = Path(path)
    inner = {**LORA_DEFAULTS, **(config.get("config") or {})}
    for flag in ("use_gating", "use_dora"):
        if inner.get(flag):
            raise UnsupportedOperationError(
                f"{path / CONFIG_FILE}: config.{flag}=true is not supported for conversion to PEFT",
                hint="only plain LoRA and IA3 adapters can be read from the adapters format",
            )
    if inner.get("vera_d") is not None or inner.get("vera_b") is not None:
        raise UnsupportedOperationError(f"{path / CONFIG_FILE}: VeRA adapters are not supported")
    state, _ = read_raw(path, config, allow_pickle)
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
                    f"{path / CONFIG_FILE}: IA3 with alpha ({alpha}) != r ({r}) has no PEFT equivalent"
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
        extras={"adapters_meta": _meta(config), "adapters_config": dict(inner), "key_root": "base_model",
                "head": read_head(path, allow_pickle), "static_head": read_static_head(path, allow_pickle)},
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


def write_adapters_lora(adapter: AdapterFiles, path: str | Path, model_type: str) -> list[Path]:
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
    name = _adapter_name(adapter)
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
    return _write(path, _full_config(dict(inner), adapter, name, model_type), tensors, adapter)


# --- prompt tuning / prefix tuning ---------------------------------------------------------------


def read_adapters_prompt(path: str | Path, config: dict, allow_pickle: bool = False) -> AdapterFiles:
    """adapters prefix tuning / prompt tuning, as canonical PEFT-style ``prompt_embeddings``."""
    import torch

    path = Path(path)
    inner = dict(config.get("config") or {})
    arch = inner.get("architecture")
    state, _ = read_raw(path, config, allow_pickle)
    meta = _meta(config)
    name = config.get("name", "")
    hidden = int(config.get("hidden_size") or 0)
    extras = {"adapters_meta": meta, "adapters_config": inner, "key_root": "base_model",
              "head": read_head(path, allow_pickle), "static_head": read_static_head(path, allow_pickle)}
    if arch == "prompt_tuning":
        key = next((k for k in state if k.endswith(f"prompt_tunings.{name}.prompt_embedding.weight")), None)
        if key is None:
            raise AdapterFormatError(f"{path}: no prompt_embedding weight for adapter {name!r}")
        if inner.get("combine", "prefix") != "prefix":
            raise UnsupportedOperationError(
                f"{path / CONFIG_FILE}: config.combine={inner.get('combine')!r} is not supported (only 'prefix')")
        emb = state[key]
        peft_config = {"peft_type": "PROMPT_TUNING", "num_virtual_tokens": int(emb.shape[0]),
                       "token_dim": int(emb.shape[1]), "num_transformer_submodules": 1,
                       "prompt_tuning_init": "RANDOM", "task_type": None}
        return AdapterFiles(method="prompt_tuning", config=peft_config, state_dict={"prompt_embeddings": emb},
                            format="adapters", source=str(path),
                            extras={**extras, "prompt_position": "after_embeddings"})
    if arch != "prefix_tuning":
        raise UnsupportedOperationError(f"{path / CONFIG_FILE}: architecture {arch!r} is not a prompt method")
    # The pool copy (prefix_tuning.prefix_tunings.<name>.self_prefix.*) is canonical; per-layer
    # copies are aliases of the same tensors.
    pool = f"prefix_tuning.prefix_tunings.{name}.self_prefix."
    parts = {k[len(pool):]: v for k, v in state.items() if k.startswith(pool)}
    if not parts:
        marker = f".prefix_tunings.{name}.self_prefix."
        parts = {k.split(marker, 1)[1]: v for k, v in state.items() if marker in k}
    length = int(inner.get("prefix_length", 30))
    with torch.no_grad():
        if inner.get("flat"):
            flat = parts["control_trans"].reshape(length, -1)
        else:
            from transformers.activations import get_activation

            embs = parts["wte.weight"]
            h = torch.nn.functional.linear(embs, parts["control_trans.0.weight"], parts["control_trans.0.bias"])
            h = get_activation(str(inner.get("non_linearity", "tanh")).lower())(h)
            flat = torch.nn.functional.linear(h, parts["control_trans.2.weight"], parts["control_trans.2.bias"])
    if hidden <= 0 or flat.shape[1] % (2 * hidden):
        raise AdapterFormatError(
            f"{path / CONFIG_FILE}: hidden_size {hidden} does not fit prefix width {flat.shape[1]}")
    peft_config = {"peft_type": "PREFIX_TUNING", "num_virtual_tokens": length, "token_dim": hidden,
                   "num_layers": int(flat.shape[1] // (2 * hidden)), "num_transformer_submodules": 1,
                   "prefix_projection": False, "encoder_hidden_size": hidden, "task_type": None}
    return AdapterFiles(method="prefix_tuning", config=peft_config, state_dict={"prompt_embeddings": flat.contiguous()},
                        format="adapters", source=str(path), extras=extras)


def write_adapters_prompt(adapter: AdapterFiles, path: str | Path, model_type: str | None = None) -> list[Path]:
    """Prompt tuning as ``prompt_embedding.weight``; prefix tuning as a flat prefix (``flat=True``)."""
    name = _adapter_name(adapter)
    emb = adapter.state_dict["prompt_embeddings"]
    if adapter.method == "prompt_tuning":
        inner = {"architecture": "prompt_tuning", "prompt_length": int(emb.shape[0]), "prompt_init": "random_uniform",
                 "prompt_init_text": None, "combine": "prefix", "random_uniform_scale": 0.5}
        inner.update({k: v for k, v in (adapter.extras.get("adapters_config") or {}).items() if k in inner})
        tensors = {f"prompt_tuning.prompt_tunings.{name}.prompt_embedding.weight": emb}
    elif adapter.method == "prefix_tuning":
        inner = {"architecture": "prefix_tuning", "encoder_prefix": True, "cross_prefix": True, "leave_out": [],
                 "flat": True, "prefix_length": int(emb.shape[0]), "bottleneck_size": 512,
                 "non_linearity": "tanh", "dropout": 0.0, "use_gating": False, "shared_gating": True,
                 "init_weights_seed": None}
        tensors = {f"prefix_tuning.prefix_tunings.{name}.self_prefix.control_trans": emb.reshape(-1)}
    else:
        raise UnsupportedOperationError(f"method {adapter.method!r} has no adapters-format prompt form")
    extras_meta = dict(adapter.extras.get("adapters_meta") or {})
    extras_meta.setdefault("hidden_size", int(adapter.config.get("token_dim") or emb.shape[-1]))
    adapter = AdapterFiles(adapter.method, adapter.config, adapter.state_dict, adapter.format, adapter.source,
                           {**adapter.extras, "adapters_meta": extras_meta})
    return _write(path, _full_config(inner, adapter, name, model_type), tensors, adapter)


# --- helpers for methods -----------------------------------------------------------------------


def rebase_keys(state_dict: dict, model: Any) -> dict:
    """Keys relative to ``model.base_model`` -> keys relative to ``model`` (adds ``bert.`` for a
    ``BertForSequenceClassification``; unchanged for a bare ``BertModel``)."""
    base = getattr(model, "base_model", model)
    if base is model:
        return dict(state_dict)
    prefix = next((n for n, m in model.named_children() if m is base), None)
    if prefix is None:
        return dict(state_dict)
    return {f"{prefix}.{k}": v for k, v in state_dict.items()}
