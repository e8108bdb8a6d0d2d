"""What the runtime caches about a model's module tree, the one fast walk over it, and the names of
base parameters seen through other methods' wrappers.

Loading, switching and merging ask for "every layer of class X" or "every module" several times per
call; one walk, cached until the structure changes, answers them all. Anything that adds, removes or
replaces modules calls :func:`forget_structure` (the runtime and the PEFT tuner methods do), or, when
it knows exactly which modules it added and removed, reports them in a :func:`structure_edit`, which
updates the cached walk and :class:`Fingerprint` in place: loading the 64th adapter then costs what
loading the 2nd does, instead of a walk over 63 adapters' modules. The runtime keeps an entry after a
change only when the change reported itself that way (:func:`settle_structure`).

No torch at import time.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
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


def structure_mark() -> int:
    """A mark to pass to :func:`settle_structure` after the change that follows."""
    return _EDITS[0]


def settle_structure(model: Any, since: int) -> None:
    """After a change to ``model`` that began at ``since`` (:func:`structure_mark`): keep the cached
    entry when a :func:`structure_edit` committed during the change reported exactly what it did,
    otherwise forget it."""
    entry = _STRUCTURE_CACHE.get(model)
    if entry is None or entry.get("settled", -1) <= since or entry["token"] != _structure_token(model):
        _STRUCTURE_CACHE.pop(model, None)


#: how many structure edits committed so far (process-wide): the order of marks and edits
_EDITS = [0]


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


# -- the fingerprint of a model's structure, and edits that keep the cache current ------------------


def _record(module: Any) -> tuple[Any, tuple[str, ...], tuple[tuple[Any, Any], ...]]:
    return module, tuple(module._modules), tuple((p, p.shape) for p in module._parameters.values() if p is not None)


@dataclass(frozen=True, eq=False)
class Fingerprint:
    """What a failed change must leave as it was: every module (by identity) with its child names and
    its parameters (by identity, with their shapes), and the PEFT adapter names. No tensor data."""

    records: dict[int, tuple[Any, tuple[str, ...], tuple[tuple[Any, Any], ...]]]
    peft_adapters: tuple[str, ...]

    def same_as(self, other: Fingerprint) -> bool:
        if self.peft_adapters != other.peft_adapters or self.records.keys() != other.records.keys():
            return False
        for key, (_, names, params) in self.records.items():
            _, other_names, other_params = other.records[key]
            if names != other_names or len(params) != len(other_params):
                return False
            if any(p is not q or s != t for (p, s), (q, t) in zip(params, other_params)):
                return False
        return True


def fingerprint(model: Any) -> Fingerprint:
    """The :class:`Fingerprint` of ``model``, cached with its walk (and kept current by edits)."""
    entry = _structure_entry(model)
    found = entry.get("fingerprint")
    if found is None:
        found = entry["fingerprint"] = Fingerprint({id(m): _record(m) for m in all_modules(model)},
                                                   tuple(sorted(_structure_token(model))))
    return found


class StructureEdit:
    """What a change did to a model's modules, reported by the code that made it (see :func:`structure_edit`)."""

    def __init__(self) -> None:
        self.report: tuple[list[Any], list[Any], list[Any]] | None = None

    def commit(self, *, added: Iterable[Any] = (), removed: Iterable[Any] = (), touched: Iterable[Any] = ()) -> None:
        """The change only added the modules ``added`` (each with everything below it) and removed
        ``removed`` (likewise), and only modules in ``touched`` (or added) gained or lost a child or
        a parameter. Nothing was replaced or moved."""
        self.report = (list(added), list(removed), list(touched))


@contextlib.contextmanager
def structure_edit(model: Any) -> Iterator[StructureEdit]:
    """Change ``model`` inside; on success, a committed :class:`StructureEdit` brings the cached walk,
    the per-class lists and the fingerprint up to date (O(what changed)), otherwise they are
    forgotten. The cache is set aside meanwhile: whatever is walked inside is not kept."""
    token = _structure_token(model)
    entry = _STRUCTURE_CACHE.pop(model, None)
    if entry is not None and (entry["token"] != token or "all" not in entry):
        entry = None
    edit = StructureEdit()
    try:
        yield edit
    finally:
        _STRUCTURE_CACHE.pop(model, None)
    if entry is None or edit.report is None:
        return
    added, removed, touched = edit.report
    new = [m for root in added for m in _walk_unnamed(root)]
    gone = {id(m) for root in removed for m in _walk_unnamed(root)}
    for key, found in list(entry.items()):
        if key == "all" or isinstance(key, type):
            kept = [m for m in found if id(m) not in gone] if gone else found
            entry[key] = kept + (new if key == "all" else [m for m in new if isinstance(m, key)])
    old = entry.get("fingerprint")
    if old is not None:
        records = {k: v for k, v in old.records.items() if k not in gone}
        records.update({id(m): _record(m) for m in [*touched, *new] if id(m) not in gone})
        entry["fingerprint"] = Fingerprint(records, tuple(sorted(_structure_token(model))))
    entry["token"] = _structure_token(model)
    _EDITS[0] += 1
    entry["settled"] = _EDITS[0]
    _STRUCTURE_CACHE[model] = entry
