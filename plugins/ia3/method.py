"""IA3, wrapping PEFT's IA3 layers.

Stack multiplies the active vectors (PEFT's multi-adapter forward). Rows of one batch can each use
their own vector (``adapter_names=``, BatchSplit, Parallel), which PEFT cannot do: the toolkit gathers
a vector per row from the layer's stacked vectors. Average uses the weighted sum of
the vectors, as PEFT's ``add_weighted_adapter`` does for IA3; with weights summing to 1 that equals
``1 + sum(w_i * (l_i - 1))``, so merging with weight w folds ``1 + w * (l - 1)``.

Merged into a checkpoint without a model (``module_updates``, PEFT's IA3 merge): a vector ``[out, 1]``
scales the rows of the weight ``[out, in]`` and the bias; a feed-forward vector ``[1, in]`` scales its
columns and leaves the bias alone. A ``Conv1D`` (``[in, out]``) takes the transposed vector.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from adapterhub.plugin import (
    AdapterFiles,
    CompositionError,
    MergeSite,
    ParamUpdate,
    UnsupportedOperationError,
    WeightedRequest,
)
from adapterhub.toolkit.peft import PeftTunerMethod, layer_orientation

#: Key of the temporary vector that serves an Average block (never saved, removed on the next switch).
AVERAGE_KEY = "__adapterhub_average__"


class IA3Method(PeftTunerMethod):
    name = "ia3"
    description = "(IA)^3: learned rescaling of activations (PEFT IA3)"
    peft_types = ("IA3",)
    peft_type = "IA3"
    layer_class = ("peft.tuners.ia3", "IA3Layer")
    param_markers = ("ia3_l",)
    adapters_architecture = "ia3"
    mergeable = True
    supports_average = True
    # PEFT has no per-row IA3; the toolkit's stacks serve one vector per row (toolkit/peft/rows.py)
    supports_mixed_batch = True
    combination_types = ("linear",)

    def detect(self, config: dict[str, Any], files: set[str], model: Any = None) -> bool:
        if "peft_type" in config:
            return str(config["peft_type"]).upper() == "IA3"
        inner = config.get("config")
        if not isinstance(inner, dict) or "name" not in config:
            return False
        # AdapterHub writes IA3 as a "lora" architecture with composition_mode "scale"
        return inner.get("architecture") == "ia3" or (
            inner.get("architecture") == "lora" and inner.get("composition_mode") == "scale"
        )

    def check_tensor(self, model: Any, adapter: AdapterFiles, key: str, shape: tuple[int, ...]) -> str | None:
        if not key.endswith(".ia3_l"):
            return super().check_tensor(model, adapter, key, shape)
        module_path = key[: -len(".ia3_l")]
        module = self.base_module(model, module_path)
        if module is None:
            return f"target module {module_path!r} (for {key}) not found in the model"
        if hasattr(module, "in_features") and hasattr(module, "out_features"):
            # a 4-bit base keeps its weight packed ([n, 1] bytes): the layer's own widths are the truth
            dims = {int(module.in_features), int(module.out_features)}
            described = f"in={module.in_features}, out={module.out_features}"
        else:
            weight = getattr(module, "weight", None)
            if weight is None or weight.dim() != 2:
                return None
            dims = {int(d) for d in weight.shape}
            described = f"weight {tuple(weight.shape)}"
        if len(shape) != 2 or 1 not in shape or max(shape) not in dims:
            return (
                f"module {module_path!r} ({type(module).__name__}, {described}): the adapter's "
                f"{key} has shape {shape}, expected [1, n] or [n, 1] with n one of {sorted(dims)}"
            )
        return None

    def reset_scales(self, model: Any) -> None:
        for layer in self.layers(model):
            if AVERAGE_KEY in layer.ia3_l:
                del layer.ia3_l[AVERAGE_KEY]

    def average_adapters(self, model: Any, names: list[str], weights: list[float]) -> None:
        import torch

        if any(True for _ in self._aux_wrappers(model, names)):
            raise CompositionError(f"Average{tuple(names)!r}: ia3 adapters with modules_to_save cannot be averaged")
        for layer in self.layers(model):
            held = [(n, w) for n, w in zip(names, weights, strict=True) if n in layer.ia3_l]
            if not held:
                continue
            vectors = [layer.ia3_l[n].detach() for n, _ in held]
            # an adapter absent from this layer counts as the identity vector
            combined = sum(w * v for (_, w), v in zip(held, vectors, strict=True)) + (1.0 - sum(w for _, w in held))
            layer.ia3_l[AVERAGE_KEY] = torch.nn.Parameter(combined, requires_grad=False)
        self.activate_stack(model, [*names, AVERAGE_KEY])
        for layer in self.layers(model):  # the averaged vector replaces the individual ones
            layer.set_adapter([AVERAGE_KEY] if AVERAGE_KEY in layer.ia3_l else [], inference_mode=True)

    def merge_layer(self, layer: Any, name: str, weight: float) -> None:
        vector = layer.ia3_l[name]
        original = vector.data
        if weight != 1.0:
            vector.data = 1.0 + weight * (original - 1.0)
        try:
            layer.merge(adapter_names=[name])
        finally:
            vector.data = original

    def module_updates(self, adapter: AdapterFiles, module: str, tensors: dict[str, Any],
                       weight: float) -> list[ParamUpdate]:
        import torch

        where = adapter.source or "ia3 adapter"
        if set(tensors) != {"ia3_l"} or tensors["ia3_l"].dim() != 2 or 1 not in tensors["ia3_l"].shape:
            raise UnsupportedOperationError(
                f"{where}: module {module} has IA3 tensors {sorted(tensors)} "
                f"{[list(t.shape) for t in tensors.values()]}; only Linear/Conv1D vectors [out, 1] or [1, in] "
                "can be merged into a checkpoint without a model",
                hint="load it with AdapterModel, merge_and_unload() and save_pretrained()")
        vector = tensors["ia3_l"].to(torch.float32)
        if weight != 1.0:
            vector = 1.0 + weight * (vector - 1.0)
        feedforward = vector.shape[1] != 1  # PEFT makes [1, in] for feed-forward modules, [out, 1] otherwise
        config = adapter.config

        def check(shape: tuple[int, ...], layer_type: str) -> str | None:
            if len(shape) != 2:
                return f"{module}.weight has shape {list(shape)}; IA3 can be merged only into 2-d Linear/Conv1D weights"
            fan_in, fan_out = (shape[0], shape[1]) if layer_orientation(layer_type, config) else (shape[1], shape[0])
            expected = (1, fan_in) if feedforward else (fan_out, 1)
            if tuple(vector.shape) != expected:
                return (f"{module}.weight has shape {list(shape)} (in={fan_in}, out={fan_out}); the IA3 vector is "
                        f"{list(vector.shape)}, expected {list(expected)}")
            return None

        def scale_weight(current: Any, site: MergeSite) -> Any:
            transposed = layer_orientation(site.layer_type, config)
            return current.mul_(vector.T if transposed else vector)

        def scale_bias(current: Any, site: MergeSite) -> Any:
            if feedforward:
                return current
            return current.mul_(vector.reshape(current.shape))

        return [ParamUpdate(f"{module}.weight", scale_weight, check),
                ParamUpdate(f"{module}.bias", scale_bias, optional=True)]
    # -- combining adapters into a new one (add_weighted_adapter; the maths is in .weighted) -----

    def check_weighted(self, model: Any, request: WeightedRequest) -> None:
        super().check_weighted(model, request)
        from . import weighted

        weighted.check(model, request, self.name)

    def weighted_adapter(self, model: Any, request: WeightedRequest, *,
                         progress: Callable[[int, int], None] | None = None) -> AdapterFiles:
        from . import weighted

        return weighted.build(model, request, self.name, progress=progress)
