"""LoRA, wrapping PEFT's LoRA layers. Average = weighted sum of deltas (each adapter's scaling times its weight)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from adapterhub.plugin import (
    COMBINATION_TYPES,
    AdapterFiles,
    AdapterFormatError,
    CompositionError,
    ParamUpdate,
    UnsupportedOperationError,
    WeightedRequest,
)
from adapterhub.toolkit.peft import PeftTunerMethod


class LoraMethod(PeftTunerMethod):
    name = "lora"
    description = "Low-rank adaptation (PEFT LoRA: rsLoRA, DoRA, patterns, embeddings, modules_to_save)"
    peft_types = ("LORA",)
    peft_type = "LORA"
    layer_class = ("peft.tuners.lora", "LoraLayer")
    param_markers = ("lora_",)
    adapters_architecture = "lora"
    mergeable = True
    supports_mixed_batch = True
    supports_average = True
    combination_types = COMBINATION_TYPES
    option_aliases = {"rank": "r", "alpha": "lora_alpha", "dropout": "lora_dropout", "target": "target_modules",
                      "targets": "target_modules", "dora": "use_dora", "rslora": "use_rslora"}

    def detect(self, config: dict[str, Any], files: set[str], model: Any = None) -> bool:
        if not super().detect(config, files, model):
            return False
        # AdapterHub's IA3 is a "lora" architecture that scales instead of adding
        return (config.get("config") or {}).get("composition_mode", "add") != "scale" if "peft_type" not in config else True

    # -- checking ----------------------------------------------------------------------------

    def check(self, model: Any, adapter: AdapterFiles) -> None:
        super().check(model, adapter)
        # PEFT allocates every targeted layer at the config's rank before loading the weights:
        # a config claiming a rank the weights do not have could allocate unbounded memory.
        ranks = [int(t.shape[0]) for k, t in adapter.state_dict.items()
                 if k.endswith((".lora_A.weight", ".lora_embedding_A")) and len(t.shape) >= 1]
        if not ranks:
            return
        declared = {"r": adapter.config.get("r", 8)}
        for key, value in (adapter.config.get("rank_pattern") or {}).items():
            declared[f"rank_pattern[{key!r}]"] = value
        for field, value in declared.items():
            if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= max(ranks):
                raise AdapterFormatError(
                    f"{adapter.source or 'adapter'}: adapter_config.json {field}={value!r} does not match the "
                    f"weights (their largest rank is {max(ranks)})",
                    hint="the config and the weights of this adapter disagree; re-save it with PEFT",
                )

    def check_tensor(self, model: Any, adapter: AdapterFiles, key: str, shape: tuple[int, ...]) -> str | None:
        for suffix, kind in (
            (".lora_A.weight", "A"),
            (".lora_B.weight", "B"),
            (".lora_embedding_A", "embA"),
            (".lora_embedding_B", "embB"),
            (".lora_magnitude_vector", "mag"),
            (".lora_B.bias", "bias"),
        ):
            if key.endswith(suffix):
                break
        else:
            if ".base_layer." in key:
                return None  # a saved base tensor, checked for equality at apply time
            return super().check_tensor(model, adapter, key, shape)
        module_path = key[: -len(suffix)]
        module = self.base_module(model, module_path)
        if module is None:
            return f"target module {module_path!r} (for {key}) not found in the model"
        dims = _in_out(module)
        if dims is None:
            return None  # conv and other layers: PEFT's own loading checks the shapes
        fan_in, fan_out = dims
        expected = {
            "A": (None, fan_in),
            "B": (fan_out, None),
            "embA": (None, fan_in),
            "embB": (fan_out, None),
            "mag": (fan_out,),
            "bias": (fan_out,),
        }[kind]
        if len(expected) != len(shape) or any(e is not None and e != s for e, s in zip(expected, shape)):
            want = tuple("r" if e is None else e for e in expected)
            return (
                f"module {module_path!r} ({type(module).__name__}, in={fan_in}, out={fan_out}): "
                f"the adapter's {key} has shape {shape}, expected {want}"
            )
        return None

    # -- composition -------------------------------------------------------------------------

    def reset_scales(self, model: Any) -> None:
        for layer in self.layers(model):
            for adapter in list(layer.scaling):
                layer.set_scale(adapter, 1.0)

    def _dora(self, model: Any, name: str) -> bool:
        config = (getattr(model, "peft_config", None) or {}).get(name)
        return bool(getattr(config, "use_dora", False))

    def average_adapters(self, model: Any, names: list[str], weights: list[float]) -> None:
        for name in names:
            if self._dora(model, name):
                raise CompositionError(
                    f"Average{tuple(names)!r}: lora adapter {name!r} uses DoRA, whose output is not linear in its "
                    "scale, so a weighted delta would not be an average",
                    hint="use Stack, or merge the adapters one by one",
                )
        if any(True for _ in self._aux_wrappers(model, names)):
            raise CompositionError(
                f"Average{tuple(names)!r}: lora adapters with modules_to_save (full module copies) cannot be averaged"
            )
        for layer in self.layers(model):
            for name, weight in zip(names, weights, strict=True):
                if name in layer.scaling:
                    layer.set_scale(name, weight)
        self.activate_stack(model, names)

    # -- combining adapters into a new one (add_weighted_adapter; the maths is in .weighted) -----

    def apply(self, model: Any, name: str, adapter: AdapterFiles) -> None:
        from . import weighted

        if weighted.PLACEMENTS in adapter.extras:  # a combination's result: its tensors go straight in
            weighted.place(self, model, name, adapter)
        else:
            super().apply(model, name, adapter)

    def check_weighted(self, model: Any, request: WeightedRequest) -> None:
        super().check_weighted(model, request)
        from . import weighted

        weighted.check(model, request, self.name)

    def weighted_adapter(self, model: Any, request: WeightedRequest, *,
                         progress: Callable[[int, int], None] | None = None) -> AdapterFiles:
        from . import weighted

        return weighted.build(model, request, self.name, progress=progress)

    # -- merging ----------------------------------------------------------------------------

    def merge(self, model: Any, name: str, weight: float = 1.0) -> None:
        if weight != 1.0 and self._dora(model, name):
            raise UnsupportedOperationError(
                f"lora adapter {name!r} uses DoRA; it can only be merged with weight 1 (DoRA is not linear in its scale)"
            )
        super().merge(model, name, weight)

    def merge_layer(self, layer: Any, name: str, weight: float) -> None:
        old = layer.scaling.get(name)
        if old is not None:
            layer.set_scale(name, weight)
        try:
            layer.merge(adapter_names=[name])
        finally:
            if old is not None:
                layer.scaling[name] = old

    # -- merging into a checkpoint without a model (adapterhub export) ---------------------------

    def merge_updates(self, adapter: AdapterFiles, weight: float = 1.0) -> list[ParamUpdate]:
        from .streaming import check_config

        check_config(adapter)
        return super().merge_updates(adapter, weight)

    def module_updates(self, adapter: AdapterFiles, module: str, tensors: dict[str, Any],
                       weight: float) -> list[ParamUpdate]:
        from .streaming import module_updates

        if bool(adapter.config.get("use_dora")) != ("lora_magnitude_vector" in tensors):
            raise AdapterFormatError(
                f"{adapter.source or 'lora adapter'}: adapter_config.json use_dora={adapter.config.get('use_dora')!r} "
                f"but module {module} {'lacks' if adapter.config.get('use_dora') else 'has'} a lora_magnitude_vector",
                hint="the config and the weights of this adapter disagree; re-save it with PEFT",
            )
        return module_updates(adapter, module, tensors, weight)


def _in_out(module: Any) -> tuple[int, int] | None:
    """(fan_in, fan_out) of a layer as LoRA sees it."""
    kind = type(module).__name__
    weight = getattr(module, "weight", None)
    if kind == "Conv1D" and weight is not None:  # transformers' GPT-2 layer stores [in, out]
        return int(weight.shape[0]), int(weight.shape[1])
    if kind == "Embedding" or hasattr(module, "num_embeddings"):
        return int(module.num_embeddings), int(module.embedding_dim)
    if hasattr(module, "in_features") and hasattr(module, "out_features"):
        return int(module.in_features), int(module.out_features)
    return None
