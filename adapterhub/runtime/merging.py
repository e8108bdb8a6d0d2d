"""The checks behind ``AdapterModel.merge_adapter``: which adapters a merge folds in, with which
weights, and whether the merged model still computes the active setup. Works on plain data (the
loaded adapters, what is merged, the active block); nothing here touches the model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..composition import Block
from ..errors import AdapterNotLoadedError, UnsupportedOperationError, UsageError
from . import dispatch


def plan_merge(
    infos: Mapping[str, Any],
    merged: Mapping[str, float],
    active: Block | None,
    names: Sequence[str] | None,
    weights: Sequence[float] | None,
) -> tuple[list[str], list[float]]:
    """The names and weights a merge folds in; raises if any cannot be merged.

    ``infos``: name -> AdapterInfo of the loaded adapters; ``merged``: what is merged already.
    """
    if names is None:
        if active is None:
            raise UsageError("no active adapters to merge", hint="set_adapter(...) first or pass adapter_names=")
        names = active.names()
        if weights is None and getattr(active, "weights", None) is not None:
            weights = list(active.weights)  # an Average merges as its weighted delta
    names = list(names)
    weights = [1.0] * len(names) if weights is None else [float(w) for w in weights]
    if len(weights) != len(names):
        raise UsageError(f"merge got {len(names)} names but {len(weights)} weights")
    for n in names:
        if n not in infos:
            raise AdapterNotLoadedError(f"adapter {n!r} is not loaded", hint=f"loaded: {', '.join(infos) or '(none)'}")
        info = infos[n]
        if n in merged:
            raise UnsupportedOperationError(f"adapter {n!r} is already merged")
        if not info.mergeable:
            raise UnsupportedOperationError(
                f"adapter {n!r} (method {info.method!r}) cannot be merged into the base weights",
                hint="keep it active as a module, or leave it out of adapter_names=",
            )
    _check_merge_keeps_setup(infos, merged, active, names)
    return names, weights


def _check_merge_keeps_setup(infos: Mapping[str, Any], merged: Mapping[str, float], active: Block | None,
                             names: list[str]) -> None:
    """Refuse merges after which the model would no longer compute the active setup.

    A layer with merged weights runs none of its unmerged adapters, so merging part of the active
    adapters would silently drop the rest; a batch split serves different adapters to different
    rows, which one shared weight cannot do.
    """
    if active is None:
        return
    will_be_merged = set(merged) | set(names)
    left_out = [n for n in active.names() if n not in will_be_merged and infos[n].mergeable]
    if left_out:
        raise UnsupportedOperationError(
            f"merge_adapter({names!r}) would merge only part of the active setup {active!r}: "
            f"active adapter(s) {left_out} would stay unmerged and be silently skipped by the merged layers",
            hint=f"merge them together (merge_adapter() merges every active adapter), or call "
            f"set_adapter({sorted(will_be_merged)!r}) (or None) before merging",
        )
    requests = dispatch.plan(active, lambda n: infos[n].method)
    split = [n for r in requests.values() if r.combine == "rows" for n in dict.fromkeys(r.names) if n in names]
    if split:
        raise UnsupportedOperationError(
            f"adapter(s) {split} serve separate slices of the batch in {active!r}; merged weights "
            "would apply them to every row",
            hint="set_adapter(...) a Stack or a single adapter before merging",
        )


def names_by_method(infos: Mapping[str, Any]) -> dict[str, list[str]]:
    """Loaded adapter names grouped by method, in loading order (what each method unloads)."""
    by_method: dict[str, list[str]] = {}
    for n, info in infos.items():
        by_method.setdefault(info.method, []).append(n)
    return by_method
