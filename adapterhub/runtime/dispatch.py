"""Turning a composition block into one request per method, and replicating the inputs of a
Parallel block (pure Python, no torch).

Each method gets one request: a Stack of its adapters, an Average, or one adapter per row of the
batch (``combine="rows"``: what BatchSplit and Parallel become, served through
:meth:`~adapterhub.plugin.AdapterMethod.set_rows`, the same path as ``am(..., adapter_names=[...])``).
A block that would ask one method for two different combinations at once raises CompositionError
naming both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..composition import Average, BatchSplit, Block, Parallel, Stack
from ..errors import CompositionError


@dataclass
class Request:
    """What one method is asked to do. ``combine="rows"``: ``names`` has one entry per row of the
    batch (None: no adapter of this method on that row)."""

    names: list[str | None]
    combine: str = "stack"
    weights: list[float] | None = None
    batch_sizes: list[int] | None = None


def rows_of(names: list[str | None], sizes: list[int]) -> list[str | None]:
    """Slice i of ``sizes[i]`` rows served by ``names[i]``, as one name per row."""
    return [name for name, size in zip(names, sizes, strict=True) for _ in range(size)]


def plan(
    block: Block | None,
    method_of: Callable[[str], str],
    parallel_rows: int = 1,
) -> dict[str, Request]:
    """method name -> Request. ``parallel_rows``: rows per copy when a Parallel block is served."""
    requests: dict[str, Request] = {}
    if block is not None:
        _walk(block, method_of, requests, parallel_rows)
    return requests


def _add(requests: dict[str, Request], method: str, request: Request, block: Block) -> None:
    existing = requests.get(method)
    if existing is None:
        requests[method] = request
    elif existing.combine == request.combine == "stack":
        existing.names.extend(request.names)
    else:
        raise CompositionError(
            f"{block!r}: method {method!r} would have to act as {existing.combine!r} and "
            f"{request.combine!r} at once",
            hint="give each part of the setup adapters of different methods, or flatten the setup",
        )


def _walk(block: Block, method_of: Callable[[str], str], requests: dict[str, Request], rows: int) -> None:
    if isinstance(block, Stack):
        for child in block.children:
            if isinstance(child, str):
                _add(requests, method_of(child), Request([child]), block)
            else:
                _walk(child, method_of, requests, rows)
    elif isinstance(block, Average):
        if not all(isinstance(c, str) for c in block.children):
            raise CompositionError(f"{block!r}: Average children must be adapter names")
        methods = {method_of(c) for c in block.children}  # type: ignore[arg-type]
        if len(methods) != 1:
            raise CompositionError(
                f"{block!r}: Average mixes methods {sorted(methods)}; it can only average adapters of one method"
            )
        _add(requests, methods.pop(), Request(list(block.children), "average", weights=list(block.weights)), block)
    elif isinstance(block, (BatchSplit, Parallel)):
        sizes = block.batch_sizes if isinstance(block, BatchSplit) else [rows] * len(block.children)
        per_method: dict[str, list[str | None]] = {}
        for i, child in enumerate(block.children):
            if isinstance(child, str):
                names = [child]
            elif isinstance(child, Stack) and all(isinstance(c, str) for c in child.children):
                names = list(child.children)  # type: ignore[arg-type]
            else:
                raise CompositionError(
                    f"{block!r}: a {type(block).__name__} slice must be an adapter name or a Stack of names, "
                    f"got {child!r}"
                )
            for name in names:
                method = method_of(name)
                slots = per_method.setdefault(method, [None] * len(block.children))
                if slots[i] is not None:
                    raise CompositionError(
                        f"{block!r}: slice {i} stacks two {method!r} adapters ({slots[i]!r}, {name!r}); "
                        f"method {method!r} serves one adapter per slice of a batch"
                    )
                slots[i] = name
        for method, slots in per_method.items():
            _add(requests, method, Request(rows_of(slots, list(sizes)), "rows"), block)
    else:
        raise CompositionError(f"unsupported composition block {block!r}")


def find_parallel(block: Block | None) -> Parallel | None:
    """The Parallel block in ``block`` (at most one is supported), if any."""
    if block is None:
        return None
    if isinstance(block, Parallel):
        return block
    found = [p for c in block.children if isinstance(c, Block) for p in [find_parallel(c)] if p is not None]
    if len(found) > 1:
        raise CompositionError(f"{block!r}: only one Parallel block per setup is supported")
    return found[0] if found else None


#: Model inputs whose first dimension is the batch (replicated for Parallel).
BATCHED_INPUTS = (
    "input_ids",
    "attention_mask",
    "inputs_embeds",
    "labels",
    "token_type_ids",
    "position_ids",
    "pixel_values",
    "decoder_input_ids",
    "decoder_attention_mask",
)


def replicate_for_parallel(kwargs: dict, parallel: Parallel) -> tuple[dict, int]:
    """The inputs repeated once per Parallel child (rows: [copy 1; copy 2; ...]) and the rows per copy."""
    copies = len(parallel.children)
    rows = None
    out = dict(kwargs)
    for key in BATCHED_INPUTS:
        value = out.get(key)
        if value is not None and hasattr(value, "repeat"):
            rows = int(value.shape[0])
            out[key] = value.repeat(copies, *([1] * (value.dim() - 1)))
    if rows is None:
        raise CompositionError(f"{parallel!r}: Parallel needs batched keyword inputs (input_ids=...)")
    return out, rows


def plan_rows(rows: list[str | None], method_of: Callable[[str], str], methods: list[str]) -> dict[str, Request | None]:
    """One request per method in ``methods`` for ``am(..., adapter_names=rows)`` (None: a base row):
    each method serves the rows that name one of its adapters; a method no row names is switched off."""
    per_method: dict[str, list[str | None]] = {}
    for i, name in enumerate(rows):
        if name is not None:
            per_method.setdefault(method_of(name), [None] * len(rows))[i] = name
    return {m: Request(per_method[m], "rows") if m in per_method else None for m in methods}


def repeat_rows(request: Request, times: int) -> Request:
    """``request`` for a batch whose every row was repeated ``times`` times in place (``generate``'s beams)."""
    return Request([name for name in request.names for _ in range(times)], "rows")
