"""Changing a model as one transaction: a method that fails to apply (or create) an adapter must
leave the model exactly as it was, and the runtime checks that it did.

:func:`fingerprint` captures what a failed apply must leave unchanged (module structure, parameter
identities and shapes, PEFT configs); :func:`run_transactionally` runs a change and, on failure,
compares. :func:`match_training_mode` puts freshly created modules into the model's train/eval mode.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import AdapterHubError
from ..toolkit.structure import all_modules, forget_structure, walk_modules

T = TypeVar("T")


def fingerprint(model: Any) -> tuple:
    """Module structure, parameter identities and shapes: what a failed apply must leave unchanged.

    One walk over the modules (O(modules + parameters), never tensor data); each module's own
    parameters are read from ``_parameters`` instead of a second walk by ``named_parameters``.
    """
    modules: list[tuple[str, type]] = []
    params: list[tuple[str, str, int, Any]] = []
    for module_name, module in walk_modules(model):
        modules.append((module_name, type(module)))
        for param_name, param in module._parameters.items():
            if param is not None:
                params.append((module_name, param_name, id(param), param.shape))  # torch.Size: an immutable tuple
    return modules, params, sorted(getattr(model, "peft_config", {}) or {})


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
        if fingerprint(model) != before:
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
