"""``AdapterModel.add_weighted_adapter``: a new adapter that combines loaded ones (PEFT's call).

The steps, each before the next: the arguments (:func:`adapterhub.plugin.weighted.build_request`),
the new name, that every source is loaded and all share one method, the method's own checks
(``check_weighted``: ranks, variants, configs); only then the work (``weighted_adapter``, which
returns the new adapter in canonical form without touching the model), and the new adapter goes on
the model exactly as a loaded one does (checked, applied as one transaction). The runtime never
looks inside the method: the maths lives behind the method contract.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..errors import AdapterNotLoadedError, UnsupportedOperationError, UsageError
from ..plugin.registry import get_method, get_methods
from ..plugin.weighted import WeightedRequest, build_request, check_adapters_argument

if TYPE_CHECKING:  # pragma: no cover
    from .model import AdapterModel


class _DefaultCombination(str):
    """The default ``combination_type``: ``"svd"``, as in PEFT. A method that only combines linearly
    (IA3, bottleneck adapters) takes it as ``"linear"``, as PEFT's IA3 does, while an explicit
    ``"svd"`` for such a method is an error."""

    __slots__ = ()


DEFAULT_COMBINATION = _DefaultCombination("svd")


def add_weighted_adapter(
    am: AdapterModel,
    adapters: Sequence[str],
    weights: Sequence[float],
    adapter_name: str,
    combination_type: str = DEFAULT_COMBINATION,
    svd_rank: int | None = None,
    svd_clamp: float | None = None,
    svd_full_matrices: bool = True,
    svd_driver: str | None = None,
    density: float | None = None,
    majority_sign_method: str = "total",
    *,
    seed: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> WeightedRequest:
    """Validate, combine and load; returns the request that was carried out (see the module docstring)."""
    check_adapters_argument(adapters)
    if not isinstance(svd_full_matrices, bool):
        raise UsageError(f"add_weighted_adapter: svd_full_matrices={svd_full_matrices!r} must be True or False")
    loaded = am.adapters
    missing = [n for n in adapters if n not in loaded]
    if missing:
        raise AdapterNotLoadedError(f"add_weighted_adapter: adapters: {', '.join(map(repr, missing))} "
                                    f"{'is' if len(missing) == 1 else 'are'} not loaded",
                                    hint=f"loaded: {', '.join(loaded) or '(none)'}")
    methods = {n: loaded[n].method for n in adapters}
    if len(set(methods.values())) > 1:
        raise UsageError(
            "add_weighted_adapter: adapters: every adapter must use the same method, got "
            + ", ".join(f"{n!r} ({m})" for n, m in methods.items()),
            hint="combine adapters of one method at a time")
    method = get_method(next(iter(methods.values())))
    if not method.combination_types:
        able = sorted(m.name for m in get_methods().values() if m.combination_types)
        raise UnsupportedOperationError(
            f"add_weighted_adapter: method {method.name!r} cannot combine adapters into a new one",
            hint=f"methods that can: {', '.join(able) or '(none installed)'}")
    if combination_type is DEFAULT_COMBINATION and "svd" not in method.combination_types:
        combination_type = method.combination_types[0]
    request = build_request(adapters, weights, adapter_name, str(combination_type), svd_rank=svd_rank,
                            svd_clamp=svd_clamp, density=density, majority_sign_method=majority_sign_method,
                            seed=seed, svd_driver=svd_driver)
    am._check_new_name(adapter_name)
    method.check_weighted(am.model, request)
    files = method.weighted_adapter(am.model, request, progress=progress)
    am._put_on_model(adapter_name, method, files, None)
    return request
