"""A different adapter on every row of a batch: ``am(**inputs, adapter_names=[...])`` and
``am.generate(..., adapter_names=[...])``, and the keyword check that keeps any other keyword the
model would drop from being passed on silently.

``adapter_names`` holds one name per row: a loaded adapter, or ``"__base__"`` for the base model
(PEFT's spelling). It replaces the active setup for that one call: each method serves the rows that
name one of its adapters (:meth:`~adapterhub.plugin.AdapterMethod.set_rows`; the rows of the other
methods' adapters and the base rows get none of its adapters), a method that no row names is
switched off, and the next call without ``adapter_names`` serves the active setup again. A row's
output is the output it gets with its adapter active alone.

Refused with an error that says so: a name that is not loaded, an adapter whose method cannot serve
rows separately, a list whose length is not the batch's, merged adapters, and a model in training
mode. ``generate`` repeats each row's name for its beams (and for ``num_return_sequences``): the
runtime catches the moment transformers expands the batch (``_expand_inputs_for_generation``) and
tells every method serving rows, so BatchSplit and Parallel setups follow the expansion as well.

No torch at import time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ..composition import BatchSplit
from ..errors import AdapterNotLoadedError, CompositionError, UnsupportedOperationError, UsageError
from ..plugin.records import BASE_ROW
from ..plugin.registry import get_method
from ..toolkit.transformers_compat import forward_keywords
from . import dispatch, heads

if TYPE_CHECKING:
    from .model import AdapterModel

#: Set on an AdapterModel while its methods serve the rows of one call instead of its active setup.
_OVERRIDE = "_rows_override"
#: The generate hook: transformers expands the batch for beams / return sequences here.
_EXPAND = "_expand_inputs_for_generation"


def call(am: AdapterModel, args: tuple, kwargs: dict[str, Any]) -> Any:
    """``am(*args, **kwargs)`` with ``adapter_names`` in ``kwargs``."""
    names = _row_names(am, kwargs.pop("adapter_names"), "am(...)")
    check_keywords(am, kwargs)
    _check_batch(names, _batch_size(args, kwargs), "am(...)")
    _serve(am, names, "am(...)")
    saved = am._heads.route
    am._heads.route = _route(am, names)
    try:
        return am.model(*args, **kwargs)
    finally:
        am._heads.route = saved


def generate(am: AdapterModel, args: tuple, kwargs: dict[str, Any]) -> Any:
    """``am.generate(*args, **kwargs)`` with ``adapter_names`` in ``kwargs``."""
    names = _row_names(am, kwargs.pop("adapter_names"), "am.generate(...)")
    _check_batch(names, _batch_size(args, kwargs), "am.generate(...)")
    _serve(am, names, "am.generate(...)")
    with following_expansion(am):
        return am.model.generate(*args, **kwargs)


def leave(am: AdapterModel) -> None:
    """After a call with ``adapter_names``: serve the active setup again (cheap when nothing to do)."""
    if am.__dict__.get(_OVERRIDE):
        am.__dict__[_OVERRIDE] = False
        am._dispatch()


def check_keywords(am: AdapterModel, kwargs: dict[str, Any]) -> None:
    """Refuse a keyword the model would accept and ignore (transformers models take ``**kwargs``)."""
    known = forward_keywords(am.model)
    if known is None:
        return
    unknown = sorted(k for k in kwargs if k not in known and not (k == "labels" and _has_heads(am)))
    if unknown:
        raise UsageError(
            f"am(...): {type(am.model).__name__}.forward does not use the keyword argument"
            f"{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; it would be ignored",
            hint="adapter_names=[...] picks an adapter per row; the model's inputs are "
            + ", ".join(sorted(k for k in known if not k.startswith(("cu_seq", "max_length", "seq_idx"))))[:300],
        )


@contextlib.contextmanager
def following_expansion(am: AdapterModel) -> Iterator[None]:
    """While ``generate`` runs: when transformers repeats every row for beams or return sequences,
    repeat the row names of every method that serves rows, in the same order."""
    model = am.model
    original = getattr(model, _EXPAND, None)
    if original is None:
        yield
        return
    shadowed = model.__dict__.get(_EXPAND)

    def expand(*args: Any, **kwargs: Any) -> Any:
        out = original(*args, **kwargs)
        size = int(kwargs.get("expand_size", args[0] if args else 1))
        if size > 1:
            _repeat_rows(am, size)
        return out

    model.__dict__[_EXPAND] = expand
    try:
        yield
    finally:
        if shadowed is None:
            model.__dict__.pop(_EXPAND, None)
        else:
            model.__dict__[_EXPAND] = shadowed


# -- helpers -------------------------------------------------------------------------------------


def _row_names(am: AdapterModel, names: Any, where: str) -> list[str | None]:
    """``adapter_names`` checked: one loaded adapter name (or ``"__base__"``) per row, each of a
    method that can serve rows separately; None for the base rows."""
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise UsageError(f"{where}: adapter_names must be a list with one adapter name per row, got {names!r}",
                         hint=f'adapter_names=["a", "b", "{BASE_ROW}"] (one entry per row of the batch)')
    if am.model.training:
        raise UnsupportedOperationError(
            f"{where}: adapter_names= serves a different adapter to each row at inference; the model is in "
            "training mode", hint="call am.eval() first (or train one adapter at a time)")
    if am._merged:
        raise UnsupportedOperationError(
            f"{where}: adapter_names= cannot serve rows while adapters {sorted(am._merged)} are merged into the "
            "base weights", hint="call am.unmerge_adapter() first")
    rows: list[str | None] = []
    for i, name in enumerate(names):
        if not isinstance(name, str):
            raise UsageError(f"{where}: adapter_names[{i}] is {name!r}; give one adapter name per row",
                             hint=f'use "{BASE_ROW}" for a row without adapters')
        if name == BASE_ROW:
            rows.append(None)
            continue
        info = am._infos.get(name)
        if info is None:
            raise AdapterNotLoadedError(f"{where}: adapter_names[{i}]: adapter {name!r} is not loaded",
                                        hint=f"loaded: {', '.join(am._infos) or '(none)'}; "
                                        f'"{BASE_ROW}" runs a row on the base model')
        if not get_method(info.method).supports_mixed_batch:
            raise CompositionError(
                f"{where}: adapter_names[{i}]: adapter {name!r} is a {info.method} adapter, and method "
                f"{info.method!r} cannot serve rows of a batch separately",
                hint="run its rows in a batch of their own with am.set_adapter(...)")
        rows.append(name)
    if not rows:
        raise UsageError(f"{where}: adapter_names is empty; give one adapter name per row")
    return rows


def _batch_size(args: tuple, kwargs: dict[str, Any]) -> int | None:
    for value in (kwargs.get("input_ids"), kwargs.get("inputs_embeds"), args[0] if args else None):
        shape = getattr(value, "shape", None)
        if shape is not None and len(shape) > 0:
            return int(shape[0])
    return None


def _check_batch(names: list[str | None], batch: int | None, where: str) -> None:
    if batch is not None and batch != len(names):
        raise UsageError(f"{where}: adapter_names has {len(names)} names but the batch has {batch} rows",
                         hint="give exactly one adapter name per row")


def _serve(am: AdapterModel, rows: list[str | None], where: str) -> None:
    """Tell every method which of its adapters each row uses (instead of the active setup)."""
    methods = list(am._methods_in_use())
    requests = dispatch.plan_rows(rows, lambda n: am._infos[n].method, methods)
    am.__dict__[_OVERRIDE] = True  # whatever happens below, the next plain call serves the setup again
    try:
        am._dispatch(requests=requests)
    except BaseException:
        am._dispatched.clear()  # a method may have failed half-way: tell every method again
        leave(am)
        raise


def _repeat_rows(am: AdapterModel, times: int) -> None:
    """Every method serving rows now serves each row ``times`` times in a row (generate's expansion)."""
    expanded = {m: dispatch.repeat_rows(r, times) for m, r in am._dispatched.items()
                if r is not None and r.combine == "rows"}
    if not expanded:
        return
    am.__dict__[_OVERRIDE] = True  # a BatchSplit of the active setup is back to its own rows afterwards
    requests: dict[str, dispatch.Request | None] = dict(am._dispatched)
    requests.update(expanded)
    am._dispatch(requests=requests)


def _route(am: AdapterModel, rows: list[str | None]) -> heads.Route:
    """The heads that answer a call with ``adapter_names``: each run of equal names answers with its
    adapter's head (AdapterHub's BatchSplit convention), when any of them has one."""
    if not _has_heads(am):
        return heads.Route((heads.MODEL_HEAD,))
    names: list[str] = []
    sizes: list[int] = []
    for row in rows:
        name = BASE_ROW if row is None else row
        if names and names[-1] == name:
            sizes[-1] += 1
        else:
            names.append(name)
            sizes.append(1)
    answering = tuple(heads.MODEL_HEAD if n == BASE_ROW or am._head_kind(n) != "runtime" else n for n in names)
    if all(h is heads.MODEL_HEAD for h in answering):
        return heads.Route((heads.MODEL_HEAD,))
    return heads.Route(answering, BatchSplit(*names, batch_sizes=sizes))


def _has_heads(am: AdapterModel) -> bool:
    """Whether any adapter carries a prediction head built by the runtime (which reads ``labels``)."""
    held = am.model._modules.get(heads.HEADS_ATTR)
    return held is not None and len(held) > 0
