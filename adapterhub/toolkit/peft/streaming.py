"""Merging a PEFT tuner adapter into a checkpoint without a model: ``merge_updates`` for PEFT methods.

:meth:`PeftStreamedMerge.merge_updates` splits an adapter's canonical state dict in two:

* the method's own tensors (keys with one of its ``param_markers``: ``lora_A``, ``ia3_l``, ...),
  grouped per module and handed to :meth:`~PeftStreamedMerge.module_updates`, which a method
  overrides with its maths (LoRA, IA3);
* full copies of base parameters that PEFT saves beside them and loads over the base: the modules of
  ``modules_to_save`` (``classifier.weight``), the biases of ``bias="all"``/``"lora_only"``
  (``...query.base_layer.bias``), whole embeddings (``save_embedding_layers``). A ``modules_to_save``
  copy replaces the parameter; the others move it by ``weight * (saved - base)``, which with weight 1
  is exactly the saved value, as PEFT's loading gives.

Helpers shared by the methods' maths live here too: :func:`layer_orientation` (Conv1D stores
``[in, out]``) and :func:`match_pattern_key` (PEFT's ``rank_pattern``/``alpha_pattern`` lookup).
No torch at import time.
"""

from __future__ import annotations

from typing import Any

from ...errors import UnsupportedOperationError
from ...plugin.records import AdapterFiles, MergeSite, ParamUpdate

#: Layer classes that hold their weight as ``[in, out]`` (transformers' GPT-2 ``Conv1D``); PEFT
#: forces ``fan_in_fan_out`` on for them whatever the config says, and off for every other layer.
FAN_IN_FAN_OUT_LAYERS = frozenset({"Conv1D"})


def layer_orientation(layer_type: str, config: dict[str, Any]) -> bool:
    """Whether the weight of a ``layer_type`` layer is stored transposed (``fan_in_fan_out``).

    PEFT decides from the module (Conv1D: yes, anything else: no) and overrides the config; only
    when the architecture is unknown (``layer_type == ""``) does the config's flag count.
    """
    if layer_type:
        return layer_type in FAN_IN_FAN_OUT_LAYERS
    return bool(config.get("fan_in_fan_out", False))


def match_pattern_key(patterns: dict[str, Any] | None, module: str) -> str | None:
    """The key of ``patterns`` (``rank_pattern``/``alpha_pattern``) that PEFT applies to ``module``,
    or None (PEFT's own ``get_pattern_key``, so the matching is PEFT's)."""
    if not patterns:
        return None
    from peft.utils.other import get_pattern_key

    key = get_pattern_key(list(patterns), module)
    return key if key in patterns else None


def shape_problem(param: str, shape: tuple[int, ...], expected: tuple[int, ...], what: str) -> str | None:
    if tuple(shape) == tuple(expected):
        return None
    return f"{param} has shape {list(shape)} in the checkpoint, but {what} needs {list(expected)}"


def _module_of(key: str, markers: tuple[str, ...]) -> tuple[str, str] | None:
    """(module path, tensor suffix) when ``key`` holds one of ``markers``, else None."""
    best = None
    for marker in markers:
        at = key.find("." + marker)
        if at >= 0 and (best is None or at < best):
            best = at
    if best is None:
        return None
    return key[:best], key[best + 1:]


def _in_modules_to_save(param: str, config: dict[str, Any]) -> bool:
    module = param.rpartition(".")[0]
    targets = config.get("modules_to_save") or []
    return any(module == t or module.endswith("." + t) for t in targets)


def saved_parameter_update(param: str, saved: Any, weight: float, *, replaces: bool, source: str) -> ParamUpdate:
    """The update of a base parameter that the adapter saved in full (see the module docstring)."""
    shape = tuple(saved.shape)
    what = f"the saved copy in {source}"

    def check(checkpoint_shape: tuple[int, ...], layer_type: str) -> str | None:
        return shape_problem(param, checkpoint_shape, shape, what)

    def apply(current: Any, site: MergeSite) -> Any:
        import torch

        value = saved.to(torch.float32)
        if replaces:
            return value.clone()
        if weight == 1.0:  # exactly the saved value when nothing before changed the parameter
            return value + (current - site.base)
        return current.add_(value - site.base, alpha=weight)

    return ParamUpdate(param, apply, check, replaces=replaces)


class PeftStreamedMerge:
    """``merge_updates`` for a PEFT tuner method (mixed into :class:`~.method.PeftTunerMethod`)."""

    name: str
    param_markers: tuple[str, ...]

    def merge_updates(self, adapter: AdapterFiles, weight: float = 1.0) -> list[ParamUpdate]:
        source = adapter.source or f"{self.name} adapter"
        modules: dict[str, dict[str, Any]] = {}
        updates: list[ParamUpdate] = []
        for key, tensor in adapter.state_dict.items():
            found = _module_of(key, self.param_markers)
            if found is not None:
                modules.setdefault(found[0], {})[found[1]] = tensor
                continue
            param = key.replace(".base_layer.", ".", 1).replace(".modules_to_save.", ".", 1)
            replaces = ".modules_to_save." in key or _in_modules_to_save(param, adapter.config)
            if replaces and weight != 1.0:
                raise UnsupportedOperationError(
                    f"{source}: {param} is a full module copy (modules_to_save); it can only be merged with "
                    f"weight 1, not {weight}",
                    hint="merge this adapter with weight 1, or export it alone",
                )
            updates.append(saved_parameter_update(param, tensor, weight, replaces=replaces, source=source))
        for module, tensors in modules.items():
            updates += self.module_updates(adapter, module, tensors, weight)
        return updates

    def module_updates(self, adapter: AdapterFiles, module: str, tensors: dict[str, Any],
                       weight: float) -> list[ParamUpdate]:
        """The updates of one module from its adapter tensors (``{"lora_A.weight": ..., ...}``),
        without a model (override point; see :meth:`AdapterMethod.merge_updates`)."""
        raise UnsupportedOperationError(f"method {self.name!r} cannot be merged into a checkpoint without a model")
