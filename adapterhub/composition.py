"""Composition blocks: how several loaded adapters act together. Pure Python, no torch.

Semantics follow AdapterHub's ``adapters`` library:

* ``Stack(a, b)``: bottlenecks run one after another; additive methods (LoRA, IA3) are all active.
* ``Parallel(a, b)``: the batch is replicated, one copy per child; output rows are [a; b].
* ``Average(a, b, weights=[...])``: weighted outputs (or deltas); weights are normalised to sum 1.
* ``BatchSplit(a, b, batch_sizes=[1, 2])``: consecutive rows of the batch go through each child.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from .errors import CompositionError


class Block:
    """A composition of adapter names and nested blocks."""

    kind: str = "block"

    def __init__(self, *children: str | Block) -> None:
        if len(children) == 1 and isinstance(children[0], (list, tuple)):
            children = tuple(children[0])
        if not children:
            raise CompositionError(f"{type(self).__name__}() needs at least one adapter")
        for child in children:
            if not isinstance(child, (str, Block)):
                raise CompositionError(
                    f"{type(self).__name__} children must be adapter names or blocks, got {child!r}"
                )
        self.children: tuple[str | Block, ...] = tuple(children)

    def names(self) -> list[str]:
        """Every adapter name in the block, depth first, in order."""
        out: list[str] = []
        for child in self.children:
            out.extend([child] if isinstance(child, str) else child.names())
        return out

    def __iter__(self) -> Iterator[str | Block]:
        return iter(self.children)

    def __len__(self) -> int:
        return len(self.children)

    def _extra(self) -> dict[str, Any]:
        return {}

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "children": [c if isinstance(c, str) else c.to_dict() for c in self.children],
            **self._extra(),
        }

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Block) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(repr(self))

    def __repr__(self) -> str:
        args = ", ".join(repr(c) for c in self.children)
        extra = "".join(f", {k}={v!r}" for k, v in self._extra().items())
        return f"{type(self).__name__}({args}{extra})"


class Stack(Block):
    kind = "stack"


class Parallel(Block):
    kind = "parallel"


class Average(Block):
    kind = "average"

    def __init__(self, *children: str | Block, weights: Sequence[float] | None = None) -> None:
        super().__init__(*children)
        if weights is None:
            weights = [1.0] * len(self.children)
        weights = [float(w) for w in weights]
        if len(weights) != len(self.children):
            raise CompositionError(
                f"Average has {len(self.children)} adapters but {len(weights)} weights"
            )
        total = sum(weights)
        if total == 0:
            raise CompositionError("Average weights sum to 0; they cannot be normalised")
        self.raw_weights = weights
        #: Normalised to sum 1, as ``adapters`` does.
        self.weights = [w / total for w in weights]

    def _extra(self) -> dict[str, Any]:
        return {"weights": self.raw_weights}


class BatchSplit(Block):
    kind = "batch_split"

    def __init__(self, *children: str | Block, batch_sizes: Sequence[int] | int) -> None:
        super().__init__(*children)
        if isinstance(batch_sizes, int):
            batch_sizes = [batch_sizes] * len(self.children)
        sizes = [int(b) for b in batch_sizes]
        if len(sizes) != len(self.children) or any(b < 0 for b in sizes):
            raise CompositionError(
                f"BatchSplit has {len(self.children)} adapters but batch_sizes={list(batch_sizes)!r}; "
                "give one non-negative size per adapter"
            )
        self.batch_sizes = sizes

    def _extra(self) -> dict[str, Any]:
        return {"batch_sizes": self.batch_sizes}


BLOCKS: dict[str, type[Block]] = {b.kind: b for b in (Stack, Parallel, Average, BatchSplit)}


def as_block(setup: str | Sequence[str | Block] | Block | None) -> Block | None:
    """Normalise what users pass to ``set_adapter``: a name, a list (= Stack) or a block."""
    if setup is None:
        return None
    if isinstance(setup, Block):
        return setup
    if isinstance(setup, str):
        return Stack(setup)
    if isinstance(setup, (list, tuple)):
        return Stack(*setup)
    raise CompositionError(f"cannot use {setup!r} as an adapter setup; pass a name, a list or a block")


def block_from_dict(data: dict[str, Any] | str) -> Block | str:
    """Inverse of :meth:`Block.to_dict` (leaves are adapter names)."""
    if isinstance(data, str):
        return data
    try:
        cls = BLOCKS[data["type"]]
        children = [block_from_dict(c) for c in data["children"]]
    except (KeyError, TypeError) as exc:
        raise CompositionError(f"malformed composition {data!r}: {exc}") from None
    if cls is Average:
        return Average(*children, weights=data.get("weights"))
    if cls is BatchSplit:
        return BatchSplit(*children, batch_sizes=data["batch_sizes"])
    return cls(*children)
