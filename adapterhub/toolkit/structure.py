"""What the runtime caches about a model's module tree, the one fast walk over it, and the names of
base parameters seen through other methods' wrappers.

Loading, switching and merging ask for "every layer of class X" or "every module" several times per
call; one walk, cached until the structure changes, answers them all. Anything that adds, removes or
replaces modules calls :func:`forget_structure` (the runtime and the PEFT tuner methods do).

No torch at import time.
"""

from __future__ import annotations

import weakref
from typing import Any


def walk_modules(model: Any) -> list[tuple[str, Any]]:
    """``list(model.named_modules())``: same names, same order, each module once, about twice as fast.

    Reads the registered children (``_modules``) with an explicit stack instead of torch's recursive
    generators; the runtime walks the whole model on every load (fingerprint, training mode).
    """
    out: list[tuple[str, Any]] = []
    seen: set[int] = set()
    stack: list[tuple[str, Any]] = [("", model)]
    while stack:
        name, module = stack.pop()
        if id(module) in seen:
            continue
        seen.add(id(module))
        out.append((name, module))
        prefix = name + "." if name else ""
        stack.extend([(prefix + k, c) for k, c in reversed(module._modules.items()) if c is not None])
    return out


def _walk_unnamed(model: Any) -> list[Any]:
    """``list(model.modules())``, the same walk as :func:`walk_modules` without building names."""
    out: list[Any] = []
    seen: set[int] = set()
    stack = [model]
    while stack:
        module = stack.pop()
        if id(module) in seen:
            continue
        seen.add(id(module))
        out.append(module)
        stack.extend([c for c in reversed(module._modules.values()) if c is not None])
    return out


#: model -> {"token": ..., class -> [modules]}: the method's layers, so that switching adapters does
#: not walk the whole model. Shared by every PEFT tuner method because they can share layer classes.
_STRUCTURE_CACHE: weakref.WeakKeyDictionary[Any, dict[Any, Any]] = weakref.WeakKeyDictionary()


def forget_structure(model: Any) -> None:
    """Drop the cached module lists of ``model``; call after anything adds, removes or replaces modules."""
    _STRUCTURE_CACHE.pop(model, None)


def _structure_token(model: Any) -> tuple[str, ...]:
    # every PEFT injection or removal changes the adapter names in peft_config: a cheap second guard
    # next to the explicit forget_structure() calls
    configs = model.__dict__.get("peft_config")
    return tuple(configs) if isinstance(configs, dict) else ()


def _structure_entry(model: Any) -> dict[Any, Any]:
    token = _structure_token(model)
    entry = _STRUCTURE_CACHE.get(model)
    if entry is None or entry["token"] != token:
        entry = _STRUCTURE_CACHE[model] = {"token": token}
    return entry


def all_modules(model: Any) -> list[Any]:
    """``list(model.modules())``, cached: one walk of the model serves every lookup until the next change."""
    entry = _structure_entry(model)
    found = entry.get("all")
    if found is None:
        found = entry["all"] = _walk_unnamed(model)
    return found


def modules_of_type(model: Any, cls: type) -> list[Any]:
    """Every submodule of ``model`` that is a ``cls``, in ``model.modules()`` order (cached)."""
    entry = _structure_entry(model)
    found = entry.get(cls)
    if found is None:
        found = entry[cls] = [m for m in all_modules(model) if isinstance(m, cls)]
    return found


#: Name segments that adapter wrappers insert above a base module: PEFT's tuner layers keep the module
#: they wrap as ``base_layer``, its modules_to_save wrapper keeps the original as ``original_module``.
_WRAPPER_SEGMENTS = frozenset({"base_layer", "original_module"})


def unwrapped_name(name: str) -> str:
    """``name`` (a parameter, module or state-dict key) as it reads on the model with no wrappers.

    When LoRA and IA3 both wrap ``value``, the inner one's weights read
    ``value.base_layer.lora_A.weight`` (two levels down: ``value.base_layer.base_layer...``). What an
    adapter is must not depend on what else wraps its modules: saved keys and BitFit's bias names
    use this form.
    """
    if "base_layer" not in name and "original_module" not in name:
        return name
    return ".".join(part for part in name.split(".") if part not in _WRAPPER_SEGMENTS)


def base_parameters(model: Any) -> dict[str, Any]:
    """The model's own parameters by :func:`unwrapped_name`, whatever wraps their modules.

    Copies that PEFT's modules_to_save wrapper trains (``...modules_to_save.<adapter>...``) are
    adapter parameters, not base ones, and are left out.
    """
    return {
        unwrapped_name(name): param
        for name, param in model.named_parameters()
        if ".modules_to_save." not in f".{name}"
    }
