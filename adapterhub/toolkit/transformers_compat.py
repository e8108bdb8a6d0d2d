"""The one place where adapterhub depends on how a transformers release spells things.

Everything else in adapterhub talks to models through their public call interface
(``input_ids``, ``inputs_embeds``, ``attention_mask``, ``position_ids`` and the key/value cache
argument). Where that interface changed between releases, the difference is handled here, and
nowhere else, by asking the model itself (``inspect.signature`` of its ``forward``) rather than
comparing version numbers.

Behaviour by release (checked by ``.ci/compat --all``, which runs the fidelity tests on each):

===================  ============================  ===========================================
transformers         key/value cache argument      what changed for adapterhub
===================  ============================  ===========================================
4.57, 5.0 – 5.23     ``past_key_values``           ``DynamicCache`` objects only (no tuples on
                                                   input from 5.0); output field
                                                   ``past_key_values``.
5.24 and newer       ``cache`` (``past_key_values``  forward, ``generate`` and the mask builders
                     accepted with a FutureWarning   take ``cache``; when both are given the old
                     until 5.40)                     name is silently dropped; the output field
                                                   is ``cache``; ``Cache.update`` receives a
                                                   ``kwargs=`` keyword.
===================  ============================  ===========================================

A method that injects keys and values (prefix tuning) or that must know whether a call is a
cached decoding step (prompt tuning under ``generate``) goes through :func:`get_cache`,
:func:`set_cache` and :func:`cache_length`. Everything here imports no torch at module import.
"""

from __future__ import annotations

import inspect
from typing import Any

#: Every name a transformers release has used for the key/value cache argument, newest first.
CACHE_ARGUMENTS = ("cache", "past_key_values")

_NAME_CACHE: dict[Any, str] = {}


def cache_argument(module: Any) -> str:
    """The keyword ``module.forward`` takes its key/value cache under (``"cache"`` on transformers
    5.24 and newer, ``"past_key_values"`` before)."""
    forward = type(module).forward
    name = _NAME_CACHE.get(forward)
    if name is None:
        try:
            params = inspect.signature(forward).parameters  # follows functools.wraps to the real forward
        except (TypeError, ValueError):
            params = {}
        name = next((n for n in CACHE_ARGUMENTS if n in params), "past_key_values")
        _NAME_CACHE[forward] = name
    return name


def get_cache(kwargs: dict[str, Any]) -> Any:
    """The cache a call carries, under whichever name the caller used (None when there is none)."""
    for name in CACHE_ARGUMENTS:
        value = kwargs.get(name)
        if value is not None:
            return value
    return None


def set_cache(module: Any, kwargs: dict[str, Any], cache: Any) -> dict[str, Any]:
    """Put ``cache`` into ``kwargs`` under the name ``module.forward`` takes, and drop the other
    spellings, so that no deprecation shim can silently prefer an empty one. Mutates and returns
    ``kwargs``."""
    target = cache_argument(module)
    for name in CACHE_ARGUMENTS:
        if name != target:
            kwargs.pop(name, None)
    kwargs[target] = cache
    return kwargs


def output_cache(outputs: Any) -> Any:
    """The cache a model output carries (``outputs.cache`` or ``outputs.past_key_values``)."""
    for name in CACHE_ARGUMENTS:
        value = getattr(outputs, name, None)
        if value is not None:
            return value
    return None


def cache_length(cache: Any) -> int:
    """Tokens a cache already holds (0 for None or an empty cache)."""
    if cache is None:
        return 0
    if hasattr(cache, "get_seq_length"):
        return int(cache.get_seq_length())
    return int(cache[0][0].shape[-2])  # legacy tuple of (key, value) per layer


def dynamic_cache(pairs: list[tuple[Any, Any]]) -> Any:
    """A ``DynamicCache`` holding the given per-layer (key, value) tensors."""
    from transformers import DynamicCache

    return DynamicCache(pairs)


#: Keywords every transformers model's forward reads from ``**kwargs`` whatever its signature shows:
#: the cache under any of its spellings, and what the output decorators consume.
_DECORATOR_KEYWORDS = frozenset({"return_dict", "output_attentions", "output_hidden_states", "use_cache",
                                 "cache_params"}) | frozenset(CACHE_ARGUMENTS)

#: Options of transformers' loss functions (``ForCausalLMLoss`` ...), which a forward with ``labels``
#: hands on through ``**kwargs``.
_LOSS_KEYWORDS = frozenset({"ignore_index", "shift_labels", "num_items_in_batch"})

_KEYWORDS_CACHE: dict[Any, frozenset[str] | None] = {}


def forward_keywords(model: Any) -> frozenset[str] | None:
    """The keywords ``model.forward`` understands, or None when any keyword may matter to it.

    Explicit parameters count; behind a ``**kwargs`` of a transformers model, the keywords its
    ``TransformersKwargs`` names (attention and loss options), the cache under every spelling, the
    output switches and, when it takes ``labels``, its loss function's options. Anything else a transformers model
    accepts and drops without a word (``adapter_names=`` among them), which is what the runtime
    refuses. A model that is not a transformers model and takes ``**kwargs`` may use any keyword.
    """
    forward = type(model).forward
    if forward in _KEYWORDS_CACHE:
        return _KEYWORDS_CACHE[forward]
    try:
        params = inspect.signature(forward).parameters
    except (TypeError, ValueError):
        _KEYWORDS_CACHE[forward] = None
        return None
    names = {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - {"self"}
    keywords: frozenset[str] | None = frozenset(names)
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        keywords = _transformers_keywords(model, names)
    _KEYWORDS_CACHE[forward] = keywords
    return keywords


def _transformers_keywords(model: Any, names: set[str]) -> frozenset[str] | None:
    try:
        from transformers import PreTrainedModel
        from transformers.utils.generic import TransformersKwargs
    except ImportError:  # pragma: no cover - transformers is a dependency
        return None
    if not isinstance(model, PreTrainedModel):
        return None
    known = set(names) | _DECORATOR_KEYWORDS
    known |= set(getattr(TransformersKwargs, "__optional_keys__", ())) | set(
        getattr(TransformersKwargs, "__required_keys__", ()))
    if "labels" in names:  # the loss functions' options, which forward passes on with **kwargs
        known |= _LOSS_KEYWORDS
    return frozenset(known)
