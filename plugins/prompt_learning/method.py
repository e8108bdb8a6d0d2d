"""Prompt tuning, prefix tuning and P-tuning as adapterhub methods.

Files are PEFT's (``adapter_config.json`` + ``adapter_model.safetensors`` holding one tensor,
``prompt_embeddings``); AdapterHub-format prompt/prefix tuning is read too and converted
(:mod:`.adapters_format`). Canonical form = PEFT's: config keys as PEFT writes them and
``{"prompt_embeddings": tensor}``. Injection into the plain model is in :mod:`.injection`.
Compositions: Stack concatenates the virtual tokens of the active adapters in order; BatchSplit (and
Parallel) gives each row slice its own prompt (all slices need one, of equal length); no Average;
no merge.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from adapterhub.plugin import (
    AdapterExistsError,
    AdapterFiles,
    AdapterFormatError,
    AdapterMethod,
    AdapterNotLoadedError,
    CompositionError,
    IncompatibleBaseModelError,
    UnsupportedOperationError,
    read_adapter_config,
)
from adapterhub.toolkit.adapter_dir import read_adapter_dir, write_adapter_dir
from adapterhub.toolkit.adapters_format import architecture, is_adapters_format
from adapterhub.toolkit.adapters_format.heads import check_static_head
from adapterhub.toolkit.options import check_options, dataclass_options

from .adapters_format import read_adapters_prompt, write_adapters_prompt
PEFT_VERSION = "0.21.2"

# Model types on which the ``adapters`` library (1.3.0) builds no prompt-tuning layer (its model
# mixins set ``support_prompt_tuning = False``; ``add_adapter``/``load_adapter`` raise). AdapterHub-format
# prompt tuning means "insert after the embedding layer", which adapterhub only does on a model whose
# base has an ``embeddings`` module (BERT-like encoders) -- the same models the library accepts.
ADAPTERS_PROMPT_TUNING_REFUSED = frozenset({
    "gpt2", "gptj", "llama", "mistral", "bart", "mbart", "plbart", "t5", "mt5", "whisper", "clip",
    "encoder-decoder"})


def adapters_prompt_tuning_refusal(model_type: str, has_embeddings_module: bool) -> str | None:
    """Why AdapterHub-format prompt tuning cannot run on this model, or None when it can."""
    if model_type in ADAPTERS_PROMPT_TUNING_REFUSED:
        return (f"AdapterHub-format prompt tuning is not supported on {model_type!r} models: the adapters "
                "library refuses it there too (support_prompt_tuning = False)")
    if not has_embeddings_module:
        return (f"AdapterHub-format prompt tuning inserts the prompt after the model's 'embeddings' module, "
                f"and this {model_type or 'model'} has none")
    return None

_ADAPTERS_PROMPT_HINT = ("use a BERT-like encoder, or train a PEFT-format prompt tuning adapter for this decoder "
                         "(PEFT prepends the virtual tokens to the input, which decoders support)")


class _PromptLearningMethod(AdapterMethod):
    peft_type: ClassVar[str]
    #: PEFT's config class for this method (its fields are the options ``create`` accepts)
    peft_config_class: ClassVar[str]
    adapters_arch: ClassVar[str | None] = None
    formats = ("peft",)
    mergeable = False
    supports_mixed_batch = True
    supports_average = False
    trainable = True

    def detect(self, config: dict[str, Any], files: set[str], model: Any = None) -> bool:
        if str(config.get("peft_type", "")).upper() == self.peft_type:
            return True
        return (self.adapters_arch is not None and is_adapters_format(config)
                and architecture(config) == self.adapters_arch)

    def read(self, path: Path, *, allow_pickle: bool = False) -> AdapterFiles:
        path = Path(path)
        config = read_adapter_config(path)
        if is_adapters_format(config):
            return read_adapters_prompt(path, config, allow_pickle, self.allowed_dtypes)
        config, state, _ = read_adapter_dir(path, allow_pickle=allow_pickle, dtypes=self.allowed_dtypes)
        if "prompt_embeddings" not in state:
            raise AdapterFormatError(
                f"{path}: weights hold {sorted(state)[:3]}, not 'prompt_embeddings'",
                hint=f"a PEFT {self.peft_type} adapter stores one tensor named prompt_embeddings")
        if int(config.get("num_transformer_submodules") or 1) != 1:
            raise UnsupportedOperationError(
                f"{path / 'adapter_config.json'}: num_transformer_submodules="
                f"{config.get('num_transformer_submodules')} (encoder-decoder models) is not supported")
        return AdapterFiles(self.name, config, {"prompt_embeddings": state["prompt_embeddings"]},
                            format="peft", source=str(path))

    def save(self, adapter: AdapterFiles, path: Path, *, format: str | None = None) -> list[Path]:
        path = Path(path)
        format = format or "peft"
        if format == "adapters":
            if self.adapters_arch is None:
                raise UnsupportedOperationError(
                    f"{self.name} has no AdapterHub-format equivalent", hint="save with format='peft'")
            if self.name == "prompt_tuning":
                model_type = str((adapter.extras.get("adapters_meta") or {}).get("model_type") or "")
                if model_type in ADAPTERS_PROMPT_TUNING_REFUSED:
                    raise UnsupportedOperationError(
                        f"{path}: cannot save prompt tuning for a {model_type!r} model in the AdapterHub format: "
                        "the adapters library refuses prompt tuning on that model type, so the files could "
                        "not be loaded", hint="save with format='peft'")
            return write_adapters_prompt(adapter, path)
        if format != "peft":
            raise UnsupportedOperationError(f"unknown format {format!r}", hint="use 'peft' or 'adapters'")
        config = {k: v for k, v in adapter.config.items() if not k.startswith("adapterhub_")}
        config["peft_type"] = self.peft_type
        config["inference_mode"] = True
        config.setdefault("peft_version", PEFT_VERSION)
        return write_adapter_dir(path, config, {"prompt_embeddings": adapter.state_dict["prompt_embeddings"]})

    # -- model ----------------------------------------------------------------------------------

    def _fill(self, model: Any, config: dict) -> dict:
        """Fill token_dim/num_layers/num_attention_heads from the base config, as PEFT does."""
        mc = model.config
        hidden = getattr(mc, "hidden_size", None) or getattr(mc, "n_embd", None) or getattr(mc, "d_model", None)
        layers = getattr(mc, "num_hidden_layers", None) or getattr(mc, "n_layer", None)
        heads = getattr(mc, "num_attention_heads", None) or getattr(mc, "n_head", None)
        config = dict(config)
        config.setdefault("num_transformer_submodules", 1)
        for key, value in (("token_dim", hidden), ("num_layers", layers), ("num_attention_heads", heads)):
            if config.get(key) is None:
                config[key] = value
        return config

    def _width(self, model: Any, config: dict) -> int:
        return int(config["token_dim"])

    def check(self, model: Any, adapter: AdapterFiles) -> None:
        if adapter.format == "adapters":
            if self.name == "prompt_tuning":
                from . import injection

                why = adapters_prompt_tuning_refusal(str(getattr(model.config, "model_type", "") or ""),
                                                     injection.embeddings_module(model) is not None)
                if why is not None:
                    raise IncompatibleBaseModelError(f"{adapter.source or 'adapter'}: {why}",
                                                     hint=_ADAPTERS_PROMPT_HINT)
            # A saved lm_head/static head must be the model's own: adapterhub never overwrites base weights.
            check_static_head(model, adapter)
        config = self._fill(model, adapter.config)
        emb = adapter.state_dict.get("prompt_embeddings")
        n = int(config.get("num_virtual_tokens") or 0)
        want = (n, self._width(model, config))
        if emb is None or tuple(emb.shape) != want:
            raise IncompatibleBaseModelError(
                f"{adapter.source or 'adapter'}: prompt_embeddings has shape "
                f"{None if emb is None else list(emb.shape)}, this model needs {list(want)}",
                hint="the adapter was trained for a base model with another hidden size / layer count")

    def _register(self, model: Any, name: str, module: Any, config: dict, style: str, extras: dict) -> None:
        from . import injection

        state = injection.get_state(model)
        if name in state.adapters:
            raise AdapterExistsError(f"prompt-learning adapter {name!r} is already loaded on this model")
        ref = next(p for n, p in model.named_parameters() if not n.startswith("adapterhub_prompts"))
        state.container[name] = module.to(device=ref.device, dtype=ref.dtype)
        state.adapters[name] = {"method": self.name, "module": state.container[name], "config": config,
                                "style": style, "extras": extras}

    def apply(self, model: Any, name: str, adapter: AdapterFiles) -> None:
        from . import injection

        self.check(model, adapter)
        config = self._fill(model, adapter.config)
        # AdapterHub-format prompts keep the library's computation: after the embeddings, and for
        # prefixes (encoders: per attention layer; decoders: the key/value cache) without shifting the
        # real tokens' positions
        style = "adapters" if adapter.format == "adapters" else "peft"
        module = injection.FixedPrompt(adapter.state_dict["prompt_embeddings"])
        module.requires_grad_(False)
        self._register(model, name, module, config, style, dict(adapter.extras))

    def _entries(self, model: Any) -> dict:
        from . import injection

        state = injection.get_state(model, create=False)
        return {} if state is None else {n: e for n, e in state.adapters.items() if e["method"] == self.name}

    def _entry(self, model: Any, name: str) -> dict:
        entry = self._entries(model).get(name)
        if entry is None:
            raise AdapterNotLoadedError(f"{self.name} adapter {name!r} is not loaded on this model")
        return entry

    def loaded_names(self, model: Any) -> set[str]:
        return set(self._entries(model))

    def activate_stack(self, model: Any, names: list[str]) -> None:
        self._set(model, "stack", names, None)

    def activate_rows(self, model: Any, rows: list[str | None]) -> None:
        """Each row gets its own prompt; every row needs one, all of the same length (the virtual
        tokens go in front of every row, so the rows' sequence lengths must stay equal)."""
        entries = self._entries(model)
        lengths = {n: int(entries[n]["config"].get("num_virtual_tokens") or entries[n]["module"]().shape[0])
                   for n in set(rows) if n is not None}
        if any(n is None for n in rows) or len(set(lengths.values())) > 1:
            without = sum(n is None for n in rows)
            raise CompositionError(
                f"{self.name}: adapter_names/BatchSplit/Parallel needs a prompt on every row, all of the same "
                f"length (the sequence length must match across the batch); "
                + (f"{without} row(s) have none" if without else f"the prompts have lengths {sorted(lengths.items())}"),
                hint="serve the rows without a prompt, or with prompts of another length, in a batch of their own")
        self._set(model, "rows", rows, None)

    def activate_batch_split(self, model: Any, names: list[str | None], batch_sizes: list[int]) -> None:
        self.activate_rows(model, [n for n, size in zip(names, batch_sizes, strict=True) for _ in range(size)])

    def _set(self, model: Any, combine: str, names: list, batch_sizes: list[int] | None) -> None:
        from . import injection

        entries = self._entries(model)
        styles = {entries[n]["style"] for n in names if n is not None}
        if len(styles) > 1:
            raise CompositionError(f"{self.name}: PEFT- and AdapterHub-style adapters cannot be active together")
        state = injection.get_state(model, create=False)
        if state is None:
            return
        state.active[self.name] = (combine, tuple(names), tuple(batch_sizes) if batch_sizes else None)

    def remove(self, model: Any, name: str) -> None:
        from . import injection

        self._entry(model, name)
        state = injection.get_state(model)
        del state.adapters[name]
        del state.container[name]
        for method, (combine, names, sizes) in list(state.active.items()):
            if name in names:
                if combine == "rows":
                    state.active[method] = ("stack", (), None)
                else:
                    state.active[method] = (combine, tuple(n for n in names if n != name), sizes)
        if not state.adapters:
            injection.drop_state(model)

    def export(self, model: Any, name: str) -> AdapterFiles:
        import torch

        entry = self._entry(model, name)
        with torch.no_grad():
            emb = entry["module"]().detach().clone()
        config = dict(entry["config"])
        config["peft_type"] = self.peft_type
        config["inference_mode"] = True
        config.pop("adapterhub_encoder", None)
        extras = dict(entry.get("extras") or {})
        meta = dict(extras.get("adapters_meta") or {})
        meta["name"] = name
        meta.setdefault("model_type", getattr(model.config, "model_type", ""))
        extras["adapters_meta"] = meta
        return AdapterFiles(self.name, config, {"prompt_embeddings": emb},
                            format="adapters" if entry["style"] == "adapters" else "peft", name=name, extras=extras)

    def parameters(self, model: Any, name: str) -> list[Any]:
        return list(self._entry(model, name)["module"].parameters())

    def check_options(self, config: dict[str, Any]) -> None:
        import peft

        check_options(self.name, config, dataclass_options(getattr(peft, self.peft_config_class)),
                      aliases={"n_tokens": "num_virtual_tokens", "virtual_tokens": "num_virtual_tokens",
                               "num_tokens": "num_virtual_tokens"},
                      unsupported=("modules_to_save",))

    def create(self, model: Any, name: str, config: dict[str, Any]) -> AdapterFiles:
        self.check_options(config)
        config = self._fill(model, {**config, "peft_type": self.peft_type})
        if not config.get("task_type"):
            # PEFT only injects prompts through a task-specific PeftModel class.
            causal = type(model).__name__.endswith(("ForCausalLM", "LMHeadModel"))
            config["task_type"] = "CAUSAL_LM" if causal else "FEATURE_EXTRACTION"
        config.setdefault("base_model_name_or_path", getattr(model.config, "_name_or_path", None) or None)
        if not config.get("num_virtual_tokens"):
            raise UnsupportedOperationError(f"{self.name}: config needs num_virtual_tokens")
        module = self._new_module(model, config)
        self._register(model, name, module, config, "peft", {})
        # Training a prompt means a frozen base (the runtime re-enables other trainable adapters).
        model.requires_grad_(False)
        module.requires_grad_(True)
        return self.export(model, name)

    def _new_module(self, model: Any, config: dict) -> Any:
        raise NotImplementedError


class PromptTuningMethod(_PromptLearningMethod):
    name = "prompt_tuning"
    description = "Prompt tuning: trained virtual-token embeddings prepended to the input (PEFT; AdapterHub read/write)"
    peft_types = ("PROMPT_TUNING",)
    formats = ("peft", "adapters")
    peft_type = "PROMPT_TUNING"
    peft_config_class = "PromptTuningConfig"
    adapters_arch = "prompt_tuning"

    def _new_module(self, model: Any, config: dict) -> Any:
        import torch

        from . import injection

        n, dim = int(config["num_virtual_tokens"]), int(config["token_dim"])
        init = str(config.get("prompt_tuning_init", "RANDOM")).upper()
        config.setdefault("prompt_tuning_init", init)
        if init == "SAMPLE_VOCAB":
            vocab = model.get_input_embeddings().weight
            idx = torch.randint(0, vocab.shape[0], (n,))
            return injection.FixedPrompt(vocab[idx].detach())
        if init != "RANDOM":
            raise UnsupportedOperationError(
                f"prompt_tuning_init={init!r} is not supported here", hint="use RANDOM or SAMPLE_VOCAB")
        return injection.FixedPrompt(torch.nn.Embedding(n, dim).weight.detach())


class PrefixTuningMethod(_PromptLearningMethod):
    name = "prefix_tuning"
    description = "Prefix tuning: trained key/value prefixes in every attention layer (PEFT; AdapterHub read/write)"
    peft_types = ("PREFIX_TUNING",)
    formats = ("peft", "adapters")
    peft_type = "PREFIX_TUNING"
    peft_config_class = "PrefixTuningConfig"
    adapters_arch = "prefix_tuning"

    def _fill(self, model: Any, config: dict) -> dict:
        config = super()._fill(model, config)
        mc = model.config
        kv = getattr(mc, "num_key_value_heads", None)
        if kv is not None and int(kv) != int(config["num_attention_heads"]):
            # Grouped-query attention: PEFT sizes the prefix by the key/value heads.
            head_dim = getattr(mc, "head_dim", None) or int(config["token_dim"]) // int(config["num_attention_heads"])
            config["token_dim"] = int(head_dim) * int(kv)
            config["num_attention_heads"] = int(kv)
        config.setdefault("prefix_projection", False)
        if config.get("encoder_hidden_size") is None:
            config["encoder_hidden_size"] = config["token_dim"]
        return config

    def _width(self, model: Any, config: dict) -> int:
        return int(config["num_layers"]) * 2 * int(config["token_dim"])

    def _new_module(self, model: Any, config: dict) -> Any:
        from peft import PrefixTuningConfig
        from peft.tuners.prefix_tuning import PrefixEncoder

        from . import injection

        keys = ("num_virtual_tokens", "token_dim", "num_layers", "num_attention_heads", "prefix_projection",
                "encoder_hidden_size", "num_transformer_submodules")
        peft_config = PrefixTuningConfig(**{k: config[k] for k in keys}, inference_mode=False)
        return injection.EncodedPrompt(PrefixEncoder(peft_config), int(config["num_virtual_tokens"]))


class PTuningMethod(_PromptLearningMethod):
    name = "p_tuning"
    description = "P-tuning: virtual tokens produced by an MLP/LSTM prompt encoder (PEFT format)"
    peft_types = ("P_TUNING",)
    peft_type = "P_TUNING"
    peft_config_class = "PromptEncoderConfig"

    def _new_module(self, model: Any, config: dict) -> Any:
        from peft import PromptEncoderConfig
        from peft.tuners.p_tuning import PromptEncoder

        from . import injection

        config.setdefault("encoder_reparameterization_type", "MLP")
        if config.get("encoder_hidden_size") is None:
            config["encoder_hidden_size"] = config["token_dim"]
        keys = ("num_virtual_tokens", "token_dim", "num_layers", "num_attention_heads", "encoder_hidden_size",
                "encoder_reparameterization_type", "num_transformer_submodules")
        extra = {k: config[k] for k in ("encoder_num_layers", "encoder_dropout") if config.get(k) is not None}
        peft_config = PromptEncoderConfig(**{k: config[k] for k in keys}, **extra, inference_mode=False)
        return injection.EncodedPrompt(PromptEncoder(peft_config), int(config["num_virtual_tokens"]))
