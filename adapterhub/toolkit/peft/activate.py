"""Which of a PEFT tuner's adapters act: Stack by setting each layer's active adapters (PEFT's
``set_adapter`` without its walk over every adapter), Average by scaling; one adapter per row is
:mod:`.rows`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from ...errors import CompositionError
from ..structure import modules_of_type
from .rows import set_layer_active


class PeftActivation:
    """layers, loaded_names and the activate_* methods (mixed into :class:`~.method.PeftTunerMethod`)."""

    name: str
    peft_type: str

    def layers(self, model: Any, name: str | None = None) -> Iterator[Any]:
        """This method's PEFT layers (that hold ``name``, when given)."""
        for module in modules_of_type(model, self._layer_cls()):
            if name is None or self._layer_has(module, name):
                yield module

    def _layer_has(self, layer: Any, name: str) -> bool:
        return any(name in getattr(layer, attr) for attr in layer.adapter_layer_names)

    def _aux_wrappers(self, model: Any, names: Sequence[str] | None = None) -> Iterator[Any]:
        """PEFT's modules_to_save wrappers that hold at least one of ``names`` (all when None)."""
        from peft.utils.other import AuxiliaryTrainingWrapper

        wrappers = modules_of_type(model, AuxiliaryTrainingWrapper)
        if not wrappers:
            return
        wanted = self.loaded_names(model) if names is None else set(names)
        for module in wrappers:
            if wanted & set(module._adapters):
                yield module

    def loaded_names(self, model: Any) -> set[str]:
        configs = getattr(model, "peft_config", None) or {}
        return {n for n, c in configs.items() if str(getattr(c, "peft_type", "")).endswith(self.peft_type)}

    def reset_activation(self, model: Any) -> None:
        """Leave per-row serving and undo Average scaling before the next activation."""
        self._leave_rows(model)
        state = self._state(model)
        for handle in state.hooks:
            handle.remove()
        state.hooks.clear()
        if state.scaled:  # only an Average changes scales: skip the walk over every layer otherwise
            self.reset_scales(model)
            state.scaled = False

    def reset_scales(self, model: Any) -> None:
        """Undo any Average weighting (subclasses that scale adapters override)."""

    def activate_average(self, model: Any, names: list[str], weights: list[float]) -> None:
        self._state(model).scaled = True  # reset_activation undoes it before the next activation
        self.average_adapters(model, names, weights)

    def average_adapters(self, model: Any, names: list[str], weights: list[float]) -> None:
        """Scale the adapters by ``weights`` and activate them (override point for ``supports_average``)."""
        raise CompositionError(f"Average: method {self.name!r} cannot average adapters")

    def activate_stack(self, model: Any, names: list[str]) -> None:
        for layer in self.layers(model):
            set_layer_active(layer, names)  # requires_grad is the runtime's: left alone
        for wrapper in self._aux_wrappers(model):
            mine = [n for n in names if n in wrapper._adapters]
            if len(mine) > 1:
                raise CompositionError(
                    f"Stack{tuple(mine)!r}: adapters of method {self.name!r} both replace module "
                    f"{type(wrapper.original_module).__name__} (modules_to_save); only one can be active"
                )
            wrapper.enable_adapters(bool(mine))
            wrapper.set_adapter(mine, inference_mode=True)
