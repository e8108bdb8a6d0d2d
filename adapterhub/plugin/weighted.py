"""The request behind ``AdapterModel.add_weighted_adapter``: which combination, with which
parameters, checked before any work (no torch here).

The combination types are PEFT's (``LoraModel.add_weighted_adapter``):

==========================  ==================================================================
``linear``                  the weighted sum of the sources' deltas
``cat``                     the same sum, stored as the concatenation of the sources' factors
``svd``                     the weighted sum, truncated to ``svd_rank`` by an SVD
``ties``, ``dare_linear``,  PEFT's pruning rules (TIES, DARE, magnitude pruning) applied to the
``dare_ties``,              LoRA factors A and B separately, as PEFT does
``magnitude_prune``
``<rule>_svd``              the same rules applied to each source's dense delta, then an SVD
==========================  ==================================================================

A method says which types it can do (:attr:`AdapterMethod.combination_types`); the runtime checks
the request here, then asks the method to check the adapters, then to build the new one.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import UsageError

#: Every combination type, in PEFT's order.
COMBINATION_TYPES = (
    "svd", "linear", "cat", "ties", "ties_svd", "dare_ties", "dare_linear", "dare_ties_svd",
    "dare_linear_svd", "magnitude_prune", "magnitude_prune_svd",
)
#: Types that end in an SVD of the combined delta (``svd_rank``, ``svd_clamp`` apply).
SVD_TYPES = tuple(t for t in COMBINATION_TYPES if t.endswith("svd"))
#: Types that prune (``density`` is required).
PRUNING_TYPES = ("ties", "ties_svd", "dare_ties", "dare_linear", "dare_ties_svd", "dare_linear_svd",
                 "magnitude_prune", "magnitude_prune_svd")
#: Types that elect a sign (``majority_sign_method`` applies).
SIGN_TYPES = ("ties", "ties_svd", "dare_ties", "dare_ties_svd")
#: Random types (``seed`` applies).
RANDOM_TYPES = ("dare_linear", "dare_ties", "dare_linear_svd", "dare_ties_svd")
#: Types that PEFT runs on the LoRA factors A and B separately: every source needs the same rank.
FACTOR_TYPES = ("ties", "dare_linear", "dare_ties", "magnitude_prune")
MAJORITY_SIGN_METHODS = ("total", "frequency")


@dataclass(frozen=True)
class WeightedRequest:
    """One ``add_weighted_adapter`` call, validated. ``adapters`` and ``weights`` line up."""

    adapters: tuple[str, ...]
    weights: tuple[float, ...]
    adapter_name: str
    combination_type: str = "svd"
    svd_rank: int | None = None
    svd_clamp: float | None = None
    density: float | None = None
    majority_sign_method: str = "total"
    seed: int | None = None
    svd_driver: str | None = None

    @property
    def rule(self) -> str:
        """The element-wise rule of the type: linear, ties, dare_linear, dare_ties or magnitude_prune."""
        base = self.combination_type.removesuffix("_svd")
        return "linear" if base in ("svd", "linear", "cat") else base

    @property
    def uses_svd(self) -> bool:
        return self.combination_type in SVD_TYPES

    @property
    def is_random(self) -> bool:
        """DARE's types: a random mask per call, drawn from torch's generator (``seed`` applies)."""
        return self.combination_type in RANDOM_TYPES

    @property
    def in_factor_space(self) -> bool:
        """PEFT's factor-space types: the rule runs on A and B separately (equal ranks needed)."""
        return self.combination_type in FACTOR_TYPES

    def describe(self) -> dict[str, object]:
        """The parameters that define the result (for provenance records)."""
        out: dict[str, object] = {"combination_type": self.combination_type,
                                  "weights": list(self.weights)}
        if self.uses_svd:
            out["svd_rank"] = self.svd_rank
            out["svd_clamp"] = self.svd_clamp
        if self.combination_type in PRUNING_TYPES:
            out["density"] = self.density
        if self.combination_type in SIGN_TYPES:
            out["majority_sign_method"] = self.majority_sign_method
        if self.combination_type in RANDOM_TYPES:
            out["seed"] = self.seed
        return out


def _number(value: object, argument: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise UsageError(f"add_weighted_adapter: {argument}={value!r} is not a finite number")
    return float(value)


def check_adapters_argument(adapters: object) -> None:
    """``adapters`` must be a non-empty list of adapter names."""
    if isinstance(adapters, str) or not isinstance(adapters, Sequence) or not adapters:
        raise UsageError(f"add_weighted_adapter: adapters={adapters!r} must be a non-empty list of adapter names")
    if any(not isinstance(a, str) for a in adapters):
        raise UsageError(f"add_weighted_adapter: adapters={list(adapters)!r} must hold adapter names (strings)")


def build_request(
    adapters: Sequence[str],
    weights: Sequence[float],
    adapter_name: str,
    combination_type: str = "svd",
    *,
    svd_rank: int | None = None,
    svd_clamp: float | None = None,
    density: float | None = None,
    majority_sign_method: str = "total",
    seed: int | None = None,
    svd_driver: str | None = None,
) -> WeightedRequest:
    """Check every argument that does not need the model; raise :class:`UsageError` naming the argument.

    With a single adapter the type becomes ``linear``, as in PEFT (a combination of one is the
    adapter scaled by its weight); its parameters are still checked against the type asked for.
    """
    check_adapters_argument(adapters)
    if isinstance(weights, str) or not isinstance(weights, Sequence):
        raise UsageError(f"add_weighted_adapter: weights={weights!r} must be a list of numbers, one per adapter")
    if len(weights) != len(adapters):
        raise UsageError(f"add_weighted_adapter: {len(adapters)} adapters but {len(weights)} weights",
                         hint="give one weight per adapter (negative weights subtract an adapter)")
    floats = tuple(_number(w, f"weights[{i}]") for i, w in enumerate(weights))
    if combination_type not in COMBINATION_TYPES:
        raise UsageError(f"add_weighted_adapter: combination_type={combination_type!r} is unknown",
                         hint=f"use one of {', '.join(COMBINATION_TYPES)}")
    if combination_type in PRUNING_TYPES:
        if density is None:
            raise UsageError(f"add_weighted_adapter: combination_type={combination_type!r} needs density",
                             hint="density is the fraction of values kept, between 0 and 1 (e.g. density=0.5)")
        density = _number(density, "density")
        if not 0 <= density <= 1:
            raise UsageError(f"add_weighted_adapter: density={density} must be between 0 and 1")
    elif density is not None:
        raise UsageError(f"add_weighted_adapter: density applies only to {', '.join(PRUNING_TYPES)}, "
                         f"not to combination_type={combination_type!r}", hint="leave density out")
    if majority_sign_method not in MAJORITY_SIGN_METHODS:
        raise UsageError(f"add_weighted_adapter: majority_sign_method={majority_sign_method!r} is unknown",
                         hint="use 'total' or 'frequency'")
    if combination_type in SVD_TYPES:
        if svd_rank is not None and (isinstance(svd_rank, bool) or not isinstance(svd_rank, numbers.Integral)
                                     or svd_rank < 1):
            raise UsageError(f"add_weighted_adapter: svd_rank={svd_rank!r} must be a positive integer")
        if svd_driver not in (None, "gesvd", "gesvdj", "gesvda"):
            raise UsageError(f"add_weighted_adapter: svd_driver={svd_driver!r} is not a cuSOLVER driver",
                             hint="use None, 'gesvd', 'gesvdj' or 'gesvda' (used on CUDA only, as in PEFT)")
        if svd_clamp is not None:
            svd_clamp = _number(svd_clamp, "svd_clamp")
            if not 0 < svd_clamp <= 1:
                raise UsageError(f"add_weighted_adapter: svd_clamp={svd_clamp} must be a quantile in (0, 1]",
                                 hint="e.g. svd_clamp=0.99 clamps the factors to their 99th percentile")
    else:
        for argument, value in (("svd_rank", svd_rank), ("svd_clamp", svd_clamp), ("svd_driver", svd_driver)):
            if value is not None:
                raise UsageError(f"add_weighted_adapter: {argument} applies only to {', '.join(SVD_TYPES)}, "
                                 f"not to combination_type={combination_type!r}", hint=f"leave {argument} out")
    if seed is not None:
        if combination_type not in RANDOM_TYPES:
            raise UsageError(f"add_weighted_adapter: seed applies only to {', '.join(RANDOM_TYPES)}, "
                             f"not to combination_type={combination_type!r}", hint="leave seed out")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise UsageError(f"add_weighted_adapter: seed={seed!r} must be an integer")
    if len(adapters) == 1:  # PEFT: a combination of one adapter is always linear
        combination_type, svd_rank, svd_clamp, density, seed, svd_driver = "linear", None, None, None, None, None
    return WeightedRequest(
        adapters=tuple(adapters), weights=floats, adapter_name=adapter_name, combination_type=combination_type,
        svd_rank=None if svd_rank is None else int(svd_rank), svd_clamp=svd_clamp, density=density,
        majority_sign_method=majority_sign_method, seed=None if seed is None else int(seed), svd_driver=svd_driver,
    )
