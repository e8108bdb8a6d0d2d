"""Changing a model as one transaction: a method that fails to apply (or create) an adapter must
leave the model exactly as it was, and the runtime checks that it did.

:func:`fingerprint` captures what a failed apply must leave unchanged (module structure, parameter
identities and shapes, PEFT configs); :func:`run_transactionally` runs a change and, on failure,
compares. :func:`match_training_mode` puts freshly created modules into the model's train/eval mode.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, TypeVar

from ..errors import AdapterHubError
from ..toolkit.structure import all_modules, forget_structure

T = TypeVar("T")


@dataclass(frozen=True, eq=False)
class Fingerprint:
    """What a failed apply must leave unchanged: the modules (in walk order) with their child names,
    the parameters with their shapes, the PEFT adapter names. Modules and parameters are held by
    reference and compared by identity; no tensor data is read."""

    modules: list[Any]
    children: list[tuple[str, ...]]
    params: list[Any]
    shapes: list[Any]
    peft_adapters: list[str]

    def same_as(self, other: Fingerprint) -> bool:
        return (len(self.modules) == len(other.modules) and all(map(operator.is_, self.modules, other.modules))
                and len(self.params) == len(other.params) and all(map(operator.is_, self.params, other.params))
                and self.children == other.children and self.shapes == other.shapes
                and self.peft_adapters == other.peft_adapters)


def fingerprint(model: Any) -> Fingerprint:
    """The model's :class:`Fingerprint`: O(modules + parameters) over the cached module walk
    (:func:`all_modules`), so the walk that put a load's new modules into the model's mode serves
    the next load's fingerprint too."""
    modules = all_modules(model)
    params = [p for own in map(attrgetter("_parameters"), modules) if own for p in own.values() if p is not None]
    return Fingerprint(modules, list(map(tuple, map(attrgetter("_modules"), modules))), params,
                       [p.shape for p in params], sorted(getattr(model, "peft_config", {}) or {}))


def run_transactionally(model: Any, change: Callable[[], T], what: str, on_change: Callable[[], None]) -> T:
    """Run ``change()``; ``on_change()`` afterwards whatever happens (caches are stale either way).

    When ``change`` fails and the model is not as it was, raise an error naming ``what`` instead:
    the model can no longer be trusted. Otherwise the original error propagates.
    """
    before = fingerprint(model)
    try:
        result = change()
    except BaseException as exc:
        on_change()
        forget_structure(model)  # a fresh walk: whatever on_change does, the cached one is stale
        if not before.same_as(fingerprint(model)):
            raise AdapterHubError(
                f"{what} failed ({exc}) and did not restore the model",
                hint="reload the base model; report this to the plugin's authors",
            ) from exc
        raise
    on_change()
    return result


def match_training_mode(model: Any) -> None:
    """New modules are created in training mode; put them in the model's mode, so a model in eval
    mode never runs adapter dropout (what PEFT's from_pretrained does with ``.eval()``).

    Ends like ``model.train(model.training)`` (every module in the model's mode) but only calls
    ``train`` where a module differs. Call it after modules were added: the walk it makes is cached
    and serves the dispatch that follows a load.
    """
    forget_structure(model)
    mode = model.training
    for module in all_modules(model):
        if module.training != mode:
            module.train(mode)
