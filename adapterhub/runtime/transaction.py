"""Changing a model as one transaction: a method that fails to apply (or create) an adapter must
leave the model exactly as it was, and the runtime checks that it did.

:func:`run_transactionally` runs a change and, on failure, compares the model's fingerprint
(:func:`~adapterhub.toolkit.structure.fingerprint`: modules, parameter identities and shapes, PEFT
adapter names) with the one taken before; the fingerprint is cached with the module walk and kept
current by changes that report what they did, so taking it costs nothing on a long-lived model. :func:`match_training_mode` puts freshly created modules into the model's train/eval mode.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import AdapterHubError
from ..toolkit.structure import all_modules, fingerprint, forget_structure

T = TypeVar("T")


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


def match_training_mode(model: Any, *, fresh: bool = True) -> None:
    """New modules are created in training mode; put them in the model's mode, so a model in eval
    mode never runs adapter dropout (what PEFT's from_pretrained does with ``.eval()``).

    Ends like ``model.train(model.training)`` (every module in the model's mode) but only calls
    ``train`` where a module differs. ``fresh``: walk the model afresh (after modules were added
    outside a transaction); after :func:`run_transactionally`, whose change settled the cached walk
    or dropped it, pass False.
    """
    if fresh:
        forget_structure(model)
    mode = model.training
    for module in all_modules(model):
        if module.training != mode:
            module.train(mode)
