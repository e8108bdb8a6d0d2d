"""Per-model state for method objects.

A method object is registered once per process and serves every model, so whatever it remembers
about one model (which adapters it holds, hooks, merged weights) must be kept per model, without
keeping the model alive and without putting anything into the model's ``state_dict``.
:class:`PerModel` does that: ``state = PerModel(MyState)``, then ``state(model)`` is that model's
``MyState`` (created on first use, gone with the model). No torch.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class PerModel(Generic[T]):
    """A weakly keyed map from a model (any weak-referenceable object) to its state."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._states: weakref.WeakKeyDictionary[Any, T] = weakref.WeakKeyDictionary()

    def __call__(self, model: Any) -> T:
        """The state of ``model``, created on first use."""
        state = self._states.get(model)
        if state is None:
            state = self._states[model] = self._factory()
        return state

    def get(self, model: Any) -> T | None:
        """The state of ``model``, or None when it has none yet."""
        return self._states.get(model)

    def drop(self, model: Any) -> T | None:
        """Forget ``model``'s state (after its last adapter is gone); returns what was dropped."""
        return self._states.pop(model, None)

    def __contains__(self, model: Any) -> bool:
        return model in self._states
