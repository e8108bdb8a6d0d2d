"""Merging a PEFT tuner adapter into the base weights exactly reversibly, removing it, unloading.

Before the first merge into a layer its base parameters are swapped for copies and the originals
kept, so ``unmerge`` restores the very same tensors (bit-identical), whatever rounding the merge did.
A merge that swaps modules instead of changing weights (PEFT's LN tuning puts its tuned copy in
place of the base module) is undone by PEFT's own ``unmerge``, which swaps them back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...errors import AdapterNotLoadedError, UnsupportedOperationError
from ..structure import forget_structure


class PeftMerging:
    """merge/unmerge/remove/unload (mixed into :class:`~.method.PeftTunerMethod`)."""

    name: str

    def merge(self, model: Any, name: str, weight: float = 1.0) -> None:
        state = self._state(model)
        if name in state.merged:
            raise UnsupportedOperationError(f"{self.name} adapter {name!r} is already merged")
        if name not in self.loaded_names(model):
            raise AdapterNotLoadedError(f"{self.name} adapter {name!r} is not loaded on this model")
        caps = self.capabilities()
        if weight != 1.0 and not caps["supports_weighted_merge"]:
            raise UnsupportedOperationError(
                f"{self.name} adapter {name!r} can only be merged with weight 1 (got {weight}): "
                f"method {self.name!r} has no weighted merge", hint="merge it with weight 1, or keep it unmerged")
        if state.merged and not caps["supports_stack"]:
            raise UnsupportedOperationError(
                f"{self.name} adapter {name!r} cannot be merged while {sorted(state.merged)} is: method "
                f"{self.name!r} runs one adapter at a time", hint="unmerge the other one first")
        try:
            for layer in self.layers(model, name):
                self._keep_originals(state, layer)
                self.merge_layer(layer, name, weight)
        except BaseException:  # a layer refused: put back exactly what was merged before
            merged = dict(state.merged)
            self._restore_all(model)
            state.merged.clear()
            for n, w in merged.items():
                self.merge(model, n, w)
            raise
        state.merged[name] = weight

    def _keep_originals(self, state: Any, layer: Any) -> None:
        """Before the first merge into a layer, swap its base parameters for copies and keep the originals."""
        if layer in state.originals:
            return
        base = layer.get_base_layer()
        state.bases[layer] = base
        originals = dict(base.named_parameters(recurse=False))
        for pname, param in originals.items():
            setattr(base, pname, self.copy_parameter(param))
        state.originals[layer] = originals

    def copy_parameter(self, param: Any) -> Any:
        """A copy of a base parameter to merge into (override point: QLoRA copies 4-bit parameters)."""
        import torch

        return torch.nn.Parameter(param.detach().clone(), requires_grad=param.requires_grad)

    def merge_layer(self, layer: Any, name: str, weight: float) -> None:
        """Fold ``name`` scaled by ``weight`` into the (copied) base parameters of ``layer`` (override point)."""
        raise UnsupportedOperationError(f"method {self.name!r} cannot be merged into the base weights")

    def unmerge(self, model: Any, name: str) -> None:
        state = self._state(model)
        if name not in state.merged:
            raise UnsupportedOperationError(f"{self.name} adapter {name!r} is not merged")
        remaining = {n: w for n, w in state.merged.items() if n != name}
        self._restore_all(model)
        state.merged.clear()
        for n, w in remaining.items():  # re-fold the others in their original order
            self.merge(model, n, w)

    def _restore_all(self, model: Any) -> None:
        state = self._state(model)
        for layer, originals in state.originals.items():
            if layer.get_base_layer() is not state.bases.get(layer, layer.get_base_layer()):
                layer.unmerge()  # the merge swapped modules; PEFT's unmerge swaps them back
            base = layer.get_base_layer()
            for pname, param in originals.items():
                setattr(base, pname, param)
            layer.merged_adapters.clear()
            if hasattr(layer, "_caches"):
                layer._caches.clear()
        state.originals.clear()
        state.bases.clear()

    def remove(self, model: Any, name: str) -> None:
        if name not in self.loaded_names(model):
            raise AdapterNotLoadedError(f"{self.name} adapter {name!r} is not loaded on this model")
        if name in self._state(model).merged:
            self.unmerge(model, name)
        self._purge(model, name)

    def unload(self, model: Any, names: Sequence[str], *, keep_merged: bool = False) -> None:
        """Remove ``names``; with ``keep_merged`` the merged weights stay in the base (merge_and_unload)."""
        state = self._state(model)
        if not keep_merged:
            for name in list(names):
                self.remove(model, name)
            return
        from peft.utils.other import AuxiliaryTrainingWrapper

        self.reset_activation(model)
        merged = list(state.merged)
        layer_cls = self._layer_cls()
        for module_name, module in list(model.named_modules()):
            if not module_name:
                continue
            if isinstance(module, layer_cls):
                replacement = module.base_layer  # its parameters hold the merged weights
            elif isinstance(module, AuxiliaryTrainingWrapper) and set(module._adapters) & set(names):
                held = [n for n in merged if n in module._adapters]
                if len(held) > 1:
                    raise UnsupportedOperationError(
                        f"merged adapters {held} each replace module {module_name!r}; cannot keep both"
                    )
                replacement = module.modules_to_save[held[0]] if held else module.original_module
            else:
                continue
            parent_name, _, child = module_name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, replacement)
        state.originals.clear()
        state.bases.clear()
        state.merged.clear()
        state.rows = None  # the layers the stacks served are gone
        forget_structure(model)
        configs = getattr(model, "peft_config", None)
        if isinstance(configs, dict):
            for name in names:
                configs.pop(name, None)
            if not configs:
                del model.peft_config
