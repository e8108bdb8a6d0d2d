"""Prompt tuning and prefix tuning in AdapterHub's ``adapters`` format, as PEFT-style
``prompt_embeddings`` (the canonical form of the prompt-learning methods).

Prefix tuning's reparameterisation MLP is folded in (exactly what it computes in eval mode), so a
prefix becomes PEFT's [prefix_length, n_layers*2*hidden] tensor; prompt tuning keeps its
[prompt_length, hidden] embedding, marked ``extras["prompt_position"]="after_embeddings"``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from adapterhub.plugin import CONFIG_NAME, FLOAT_DTYPES, AdapterFiles, AdapterFormatError, UnsupportedOperationError
from adapterhub.toolkit.adapters_format.heads import read_head, read_static_head
from adapterhub.toolkit.adapters_format.layout import adapter_name, full_config, meta, read_raw, refusal, write



def read_adapters_prompt(path: str | Path, config: dict, allow_pickle: bool = False,
                         dtypes: Any = FLOAT_DTYPES) -> AdapterFiles:
    """adapters prefix tuning / prompt tuning, as canonical PEFT-style ``prompt_embeddings``."""
    import torch

    path = Path(path)
    inner = dict(config.get("config") or {})
    arch = inner.get("architecture")
    state, _ = read_raw(path, config, allow_pickle, dtypes)
    name = config.get("name", "")
    hidden = int(config.get("hidden_size") or 0)
    heads = {"head": read_head(path, allow_pickle), "static_head": read_static_head(path, allow_pickle)}
    extras = {"adapters_meta": meta(config), "adapters_config": inner, "key_root": "base_model"}
    if arch == "prompt_tuning":
        key = next((k for k in state if k.endswith(f"prompt_tunings.{name}.prompt_embedding.weight")), None)
        if key is None:
            raise AdapterFormatError(f"{path}: no prompt_embedding weight for adapter {name!r}")
        if inner.get("combine", "prefix") != "prefix":
            raise UnsupportedOperationError(
                f"{path / CONFIG_NAME}: config.combine={inner.get('combine')!r} is not supported (only 'prefix')")
        emb = state[key]
        peft_config = {"peft_type": "PROMPT_TUNING", "num_virtual_tokens": int(emb.shape[0]),
                       "token_dim": int(emb.shape[1]), "num_transformer_submodules": 1,
                       "prompt_tuning_init": "RANDOM", "task_type": None}
        return AdapterFiles("prompt_tuning", peft_config, {"prompt_embeddings": emb}, format="adapters",
                            source=str(path), **heads, extras={**extras, "prompt_position": "after_embeddings"})
    if arch != "prefix_tuning":
        raise UnsupportedOperationError(f"{path / CONFIG_NAME}: architecture {arch!r} is not a prompt method")
    for key, allowed in (("leave_out", []), ("use_gating", False)):
        if inner.get(key, allowed) not in (allowed, None):
            raise UnsupportedOperationError(
                f"{path / CONFIG_NAME}: config.{key}={inner[key]!r} is not supported for prefix tuning",
                hint="adapterhub runs AdapterHub-format prefixes in every layer, without gates")
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
    if hidden <= 0:
        raise AdapterFormatError(f"{path / CONFIG_NAME}: no hidden_size")
    # num_layers / token_dim / heads come from the model (key/value heads on GQA models, as adapters
    # sizes the prefix); check() compares the prefix width with them.
    peft_config = {"peft_type": "PREFIX_TUNING", "num_virtual_tokens": length, "token_dim": None,
                   "num_layers": None, "num_attention_heads": None, "num_transformer_submodules": 1,
                   "prefix_projection": False, "encoder_hidden_size": hidden, "task_type": None}
    return AdapterFiles("prefix_tuning", peft_config, {"prompt_embeddings": flat.contiguous()}, format="adapters",
                        source=str(path), **heads, extras=extras)


#: PromptTuningConfig / PrefixTuningConfig fields of adapters 1.3.0 with their defaults (the key sets
#: written; ``random_uniform_scale`` is a class attribute there, not a field, so it is not saved).
PROMPT_DEFAULTS = {"architecture": "prompt_tuning", "prompt_length": 10, "prompt_init": "random_uniform",
                   "prompt_init_text": None, "combine": "prefix", "init_weights_seed": None}
PREFIX_DEFAULTS = {"architecture": "prefix_tuning", "encoder_prefix": True, "cross_prefix": True, "leave_out": [],
                   "flat": False, "prefix_length": 30, "bottleneck_size": 512, "non_linearity": "tanh",
                   "dropout": 0.0, "use_gating": False, "shared_gating": True, "init_weights_seed": None}

def write_adapters_prompt(adapter: AdapterFiles, path: str | Path, model_type: str | None = None) -> list[Path]:
    """Prompt tuning as ``prompt_embedding.weight``; prefix tuning as a flat prefix (``flat=True``).

    Only prompts that came from the AdapterHub format (``adapter.format == "adapters"``) are written:
    a PEFT-style prompt (created with ``add_adapter`` or read from PEFT's files) is prepended before
    the position embeddings and shifts the real tokens' positions, while ``adapters`` inserts prompts
    after the embeddings (prefixes: into each attention) without shifting; no conversion is exact.
    """
    label = {"prompt_tuning": "prompt tuning", "prefix_tuning": "prefix tuning"}.get(adapter.method)
    if label is None:
        raise UnsupportedOperationError(f"method {adapter.method!r} has no adapters-format prompt form")
    if adapter.format != "adapters":
        raise refusal(label, "a PEFT-style prompt (created with add_adapter or read from PEFT's format)",
                      "PEFT puts the virtual tokens before the position embeddings and shifts the real tokens' "
                      "positions; the adapters library adds them after the embeddings without shifting, so no "
                      "conversion computes the same function")
    name = adapter_name(adapter)
    emb = adapter.state_dict["prompt_embeddings"]
    saved = dict(adapter.extras.get("adapters_config") or {})
    if adapter.method == "prompt_tuning":
        inner = {**PROMPT_DEFAULTS, **{k: v for k, v in saved.items() if k in PROMPT_DEFAULTS}}
        inner.update(architecture="prompt_tuning", prompt_length=int(emb.shape[0]))
        tensors = {f"prompt_tuning.prompt_tunings.{name}.prompt_embedding.weight": emb}
    else:
        inner = {**PREFIX_DEFAULTS, **{k: v for k, v in saved.items() if k in PREFIX_DEFAULTS}}
        inner.update(architecture="prefix_tuning", flat=True, prefix_length=int(emb.shape[0]))
        tensors = {f"prefix_tuning.prefix_tunings.{name}.self_prefix.control_trans": emb.reshape(-1)}
    extras_meta = dict(adapter.extras.get("adapters_meta") or {})
    extras_meta.setdefault("hidden_size", adapter.hidden_size or int(adapter.config.get("encoder_hidden_size")
                                                                     or adapter.config.get("token_dim") or emb.shape[-1]))
    adapter = replace(adapter, extras={**adapter.extras, "adapters_meta": extras_meta})
    return write(path, full_config(inner, adapter, name, model_type), tensors, adapter)
